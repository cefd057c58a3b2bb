"""Stage evaluate: test-set metrics, the confusion matrix and the prediction grid.

Reads the model, the prepared test set, params.yaml's `evaluate` section, `train.model`, and the
model's test-time augmentation `tta.<model>` (the class probabilities averaged over the image and
its mirror, and at level 2 both shifted by a pixel). Writes reports/metrics.json (accuracy, loss,
per-class and macro precision / recall / F1 from scikit-learn), reports/eval/confusion.csv for
DVC's confusion template, reports/figures/confusion_matrix.png and reports/figures/predictions.png.
"""

import sys

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, write_json, write_text
from cifar.core.params import load_params
from cifar.evaluation import tta
from cifar.evaluation.params import EVALUATE, TTA_LEVEL


def evaluate(settings, tta_level=0, artifacts=Artifacts()):
    # Imported here: TensorFlow, scikit-learn and matplotlib take seconds, and --help needs none of them.
    from sklearn.metrics import confusion_matrix

    from cifar.evaluation.metrics import compute_metrics, confusion_rows
    from cifar.figures.confusion import confusion_figure
    from cifar.figures.grids import predictions_figure
    from cifar.models.saved import load_trained_model

    model = load_trained_model(artifacts.model)
    arrays, classes = artifacts.load_prepared()
    probabilities = tta.predict(model, arrays["x_test"], tta_level, settings["batch_size"])
    y_true, predicted = arrays["y_test"], probabilities.argmax(axis=1)
    metrics = compute_metrics(y_true, probabilities, classes)
    write_json(artifacts.metrics, metrics)
    write_text(artifacts.confusion_data, confusion_rows(y_true, predicted, classes))
    matrix = confusion_matrix(y_true, predicted, labels=list(range(len(classes))))
    save_figure(artifacts.confusion_figure, confusion_figure(matrix, classes))
    rng = np.random.default_rng(settings["seed"])
    scores = probabilities.max(axis=1)
    save_figure(
        artifacts.predictions_figure, predictions_figure(arrays["x_test"], y_true, predicted, scores, classes, rng)
    )
    print(
        f"test accuracy: {metrics['accuracy']:.4f}  loss: {metrics['loss']:.4f}  (test-time augmentation: {tta_level})"
    )
    return metrics


def main(argv=None):
    cli.parser("stages.evaluate", __doc__).parse_args(argv)
    from cifar.models.registry import MODEL_RULE

    params = load_params({"evaluate": EVALUATE, "train.model": MODEL_RULE})
    tta_key = f"tta.{params['train.model']}"  # the model in use's; dvc.yaml lists the same key
    evaluate(params["evaluate"], load_params({tta_key: TTA_LEVEL})[tta_key])


if __name__ == "__main__":
    sys.exit(cli.run(main))
