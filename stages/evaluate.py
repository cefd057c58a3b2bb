"""Stage evaluate: test-set metrics, the confusion matrix and the prediction grid.

Writes reports/metrics.json (accuracy, loss, per-class and macro precision /
recall / F1 from scikit-learn), reports/eval/confusion.csv for DVC's confusion
template, and the tutorial's two figures. The fast model's predictions average
the views of its `tta_level` (stages/tta.py).
"""

import csv
import io
import sys
from pathlib import Path


import numpy as np
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss

from stages.atomic import save_figure, write_json, write_text
from stages.errors import run_stage
from stages.models import MODEL_FILE
from stages.params import evaluation_tta_level, load_params
from stages.preprocess import PREPARED_DIR

METRICS_FILE = Path("reports/metrics.json")
CONFUSION_DATA = Path("reports/eval/confusion.csv")
CONFUSION_FIGURE = Path("reports/figures/confusion_matrix.png")
PREDICTIONS_FIGURE = Path("reports/figures/predictions.png")


def compute_metrics(y_true, probabilities, classes):
    """Accuracy, cross-entropy loss and per-class / macro precision, recall and F1."""
    predicted = probabilities.argmax(axis=1)
    labels = list(range(len(classes)))
    report = classification_report(
        y_true, predicted, labels=labels, target_names=classes, output_dict=True, zero_division=0
    )
    metrics = {
        "accuracy": round(float(accuracy_score(y_true, predicted)), 6),
        "loss": round(float(log_loss(y_true, probabilities, labels=labels)), 6),
        "macro": {k: round(float(report["macro avg"][k]), 6) for k in ("precision", "recall", "f1-score")},
        "per_class": {
            name: {k: round(float(report[name][k]), 6) for k in ("precision", "recall", "f1-score")} for name in classes
        },
    }
    return metrics


def confusion_rows(y_true, predicted, classes):
    """CSV text with one (actual, predicted) row per test image, for DVC's confusion template."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["actual", "predicted"])
    writer.writerows((classes[t], classes[p]) for t, p in zip(y_true, predicted))
    return out.getvalue()


def evaluate(params, model_file=MODEL_FILE, prepared_dir=PREPARED_DIR, reports=Path("."), tta_level=0):
    from stages import tta
    from stages.figures import confusion_figure, predictions_figure
    from stages.models import load_trained_model
    from stages.train import load_prepared

    model = load_trained_model(model_file)
    arrays, classes = load_prepared(prepared_dir)
    probabilities = tta.predict(model, arrays["x_test"], tta_level, params["batch_size"])
    y_true = arrays["y_test"]
    predicted = probabilities.argmax(axis=1)
    metrics = compute_metrics(y_true, probabilities, classes)
    reports = Path(reports)
    write_json(reports / METRICS_FILE, metrics)
    write_text(reports / CONFUSION_DATA, confusion_rows(y_true, predicted, classes))
    matrix = confusion_matrix(y_true, predicted, labels=list(range(len(classes))))
    save_figure(reports / CONFUSION_FIGURE, confusion_figure(matrix, classes))
    rng = np.random.default_rng(params["seed"])
    scores = probabilities.max(axis=1)
    save_figure(
        reports / PREDICTIONS_FIGURE,
        predictions_figure(arrays["x_test"], y_true, predicted, scores, classes, rng),
    )
    print(
        f"test accuracy: {metrics['accuracy']:.4f}  loss: {metrics['loss']:.4f}  (test-time augmentation: {tta_level})"
    )
    return metrics


def main(argv=None):
    params = load_params()
    evaluate(params["evaluate"], tta_level=evaluation_tta_level(params))


if __name__ == "__main__":
    sys.exit(run_stage(main))
