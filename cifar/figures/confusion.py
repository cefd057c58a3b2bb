"""The confusion matrix with class names on both axes, readable for 10 classes and for 100."""

import numpy as np

from cifar.figures import plt

COUNTS_UP_TO = 20  # classes; beyond, the cells are too small for numbers


def confusion_figure(matrix, classes):
    """Counts in every cell for a few classes (scikit-learn's display); for many, each row as the
    fraction of its true class, as a heatmap, with every class named in small type."""
    if len(classes) <= COUNTS_UP_TO:
        from sklearn.metrics import ConfusionMatrixDisplay  # scikit-learn takes seconds to import

        fig, ax = plt.subplots(figsize=(8, 7))
        ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, xticks_rotation=45, colorbar=True)
        ax.set_title("Confusion matrix", fontsize=16)
        fig.tight_layout()
        return fig
    rows = matrix.sum(axis=1, keepdims=True)
    fractions = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    side = max(8.0, 0.14 * len(classes))
    fontsize = max(4, min(8, 700 / len(classes)))
    fig, ax = plt.subplots(figsize=(side + 1.5, side))
    shown = ax.imshow(fractions, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=fontsize)
    ax.set_yticks(range(len(classes)), classes, fontsize=fontsize)
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    fig.colorbar(shown, ax=ax, fraction=0.04, label="fraction of the true class")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"Confusion matrix, {len(classes)} classes (accuracy {accuracy:.3f})", fontsize=16)
    fig.tight_layout()
    return fig
