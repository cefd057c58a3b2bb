"""Stage evaluate: test-set metrics, calibration, failure modes and explanations, with their figures.

Reads the model, the prepared test set, params.yaml's `evaluate` section, `train.model`, and the
model's test-time augmentation `tta.<model>` (as airbench's evaluation: the class scores before the
softmax averaged over the image and its mirror, and at level 2 both shifted by a pixel, then the
softmax of that average). Writes reports/metrics.json (accuracy, loss,
expected calibration error over 15 bins and NLL, with and without the temperature the model holds
(cifar/calibration), per-class and macro precision / recall / F1),
reports/eval/{confusion,reliability,per_class_accuracy}.csv for DVC's plots, and the figures:
confusion matrix, prediction grid, reliability diagram, accuracy per class, the most confident
mistakes, and Grad-CAM heatmaps over the prediction grid's images and over the mistakes.
"""

import sys

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, write_json, write_text
from cifar.core.params import Rule, load_params, non_negative_int, positive_int
from cifar.evaluation import tta

# params.yaml's `evaluate` section (each key is documented there); `tta.<model>`'s rule is tta.TTA_LEVEL
EVALUATE = {
    "batch_size": positive_int(),
    "seed": non_negative_int(),
    "mistakes": positive_int("an integer from 1 to 64", maximum=64),
    "tta_fraction": tta.TTA_FRACTION,
}
MODEL_NAME = Rule((str,), "a model's name, as train.model", pattern=r"[a-z][a-z0-9_]*")


def evaluate(settings, tta_level=0, artifacts=Artifacts()):
    # Imported here: TensorFlow, scikit-learn and matplotlib take seconds, and --help needs none of them.
    from cifar.calibration.temperature import temperature_of, without_temperature
    from cifar.evaluation.metrics import compute_metrics, confusion_rows
    from cifar.evaluation.reliability import expected_calibration_error, negative_log_likelihood
    from cifar.network.trained import load_trained_model

    model = load_trained_model(artifacts.model)
    arrays, classes = artifacts.load_prepared()
    probabilities = tta.predict(model, arrays["x_test"], tta_level, settings["batch_size"], settings["tta_fraction"])
    metrics = compute_metrics(arrays["y_test"], probabilities, classes)
    # Temperature scaling (the model holds its T; 1 = none): calibration with and without it
    temperature = temperature_of(model)
    unscaled = without_temperature(probabilities, temperature)
    metrics["temperature"] = round(temperature, 6)
    metrics["ece_without_temperature"] = round(float(expected_calibration_error(unscaled, arrays["y_test"])), 6)
    metrics["nll_without_temperature"] = round(negative_log_likelihood(unscaled, arrays["y_test"]), 6)
    write_json(artifacts.metrics, metrics)
    write_text(artifacts.confusion_data, confusion_rows(arrays["y_test"], probabilities.argmax(axis=1), classes))
    write_tables_and_figures(model, arrays, classes, probabilities, metrics, settings, artifacts)
    print(
        f"test accuracy: {metrics['accuracy']:.4f}  loss: {metrics['loss']:.4f}  ECE: {metrics['ece']:.4f}  "
        f"(temperature {temperature:.3f}; without it ECE {metrics['ece_without_temperature']:.4f})  "
        f"(test-time augmentation: {tta_level}{views_for(tta_level, settings['tta_fraction'])})"
    )
    return metrics


def views_for(level, fraction):
    """What the printed line adds to the TTA level: which images got its views, when not all."""
    return f", on the {fraction:.0%} least confident images" if level and fraction < 1 else ""


def write_tables_and_figures(model, arrays, classes, probabilities, metrics, settings, artifacts):
    from sklearn.metrics import confusion_matrix

    from cifar.evaluation.gradcam import grad_cam
    from cifar.evaluation.metrics import csv_text, most_confident_mistakes, per_class_accuracy
    from cifar.evaluation.reliability import reliability_bins
    from cifar.figures import evaluation as figures
    from cifar.figures.confusion import confusion_figure
    from cifar.figures.grids import prediction_titles, predictions_figure, random_indices

    images, y_true = arrays["x_test"], arrays["y_test"]
    predicted, scores = probabilities.argmax(axis=1), probabilities.max(axis=1)
    bins = reliability_bins(probabilities, y_true)
    write_text(
        artifacts.reliability_data,
        csv_text(
            ["bin", "accuracy", "confidence", "images"], [((lo + hi) / 2, a, c, n) for lo, hi, n, a, c in bins if n]
        ),
    )
    accuracy = per_class_accuracy(predicted, y_true, len(classes))
    write_text(artifacts.per_class_accuracy_data, csv_text(["class", "accuracy"], zip(classes, accuracy.round(6))))

    matrix = confusion_matrix(y_true, predicted, labels=list(range(len(classes))))
    save_figure(artifacts.confusion_figure, confusion_figure(matrix, classes))
    shown = random_indices(len(images), np.random.default_rng(settings["seed"]))
    save_figure(
        artifacts.predictions_figure,
        predictions_figure(images[shown], y_true[shown], predicted[shown], scores[shown], classes),
    )
    save_figure(artifacts.reliability_figure, figures.reliability_figure(bins, metrics["ece"]))
    save_figure(artifacts.per_class_accuracy_figure, figures.per_class_accuracy_figure(accuracy, classes))
    mistakes = most_confident_mistakes(probabilities, y_true, settings["mistakes"])
    save_figure(
        artifacts.mistakes_figure,
        figures.mistakes_figure(images[mistakes], y_true[mistakes], predicted[mistakes], scores[mistakes], classes),
    )
    for indices, path in ((shown, artifacts.gradcam_figure), (mistakes, artifacts.gradcam_mistakes_figure)):
        heatmaps = grad_cam(model, images[indices], predicted[indices])
        titles = prediction_titles(y_true[indices], predicted[indices], scores[indices], classes)
        save_figure(path, figures.gradcam_figure(images[indices], heatmaps, titles))


def main(argv=None):
    cli.parser("stages.evaluate", __doc__).parse_args(argv)
    # train.model is checked by train against the models; here it only names the key `tta.<model>`, so that
    # evaluate runs no training code (a model without a level is a missing key, in one line)
    params = load_params({"evaluate": EVALUATE, "train.model": MODEL_NAME})
    tta_key = f"tta.{params['train.model']}"  # the model in use's; dvc.yaml lists the same key
    evaluate(params["evaluate"], load_params({tta_key: tta.TTA_LEVEL})[tta_key])


if __name__ == "__main__":
    sys.exit(cli.run(main))
