"""Where the model fails: its most confident mistakes, and its accuracy per class."""

import numpy as np


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
