"""The confusion matrix with class names on both axes."""

from cifar.figures import plt


def confusion_figure(matrix, classes):
    """The confusion matrix with class names on both axes."""
    from sklearn.metrics import ConfusionMatrixDisplay  # scikit-learn takes seconds to import; only this needs it

    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, xticks_rotation=45, colorbar=True)
    ax.set_title("Confusion matrix", fontsize=16)
    fig.tight_layout()
    return fig
