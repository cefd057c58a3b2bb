"""Test-set metrics from class probabilities: accuracy, loss, per-class and macro precision / recall / F1,
and the (actual, predicted) rows DVC's confusion template draws."""

import csv
import io

import numpy as np
from sklearn.metrics import accuracy_score, classification_report, log_loss

from cifar.evaluation.reliability import expected_calibration_error, negative_log_likelihood


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
        # calibration (cifar/evaluation/reliability.py): expected calibration error (0: perfect) and NLL
        "ece": round(float(expected_calibration_error(probabilities, y_true)), 6),
        "nll": round(negative_log_likelihood(probabilities, y_true), 6),
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


def csv_text(header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# Where the model fails: its most confident mistakes, and its accuracy per class.


def most_confident_mistakes(probabilities, labels, count):
    """Indices of up to `count` wrong predictions, the most confident first."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probabilities[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")][:count]


def per_class_accuracy(predicted, labels, num_classes):
    """Accuracy of each true class (its recall); NaN for a class without test images."""
    return np.array(
        [np.mean(predicted[labels == c] == c) if np.any(labels == c) else np.nan for c in range(num_classes)]
    )
