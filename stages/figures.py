"""Figures of the tutorial: image grids with titles and the confusion matrix."""

import matplotlib

matplotlib.use("Agg")  # files only; no display on CI or servers
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

GRID_COLS = 8
GRID_ROWS = 2


def image_grid(images, titles, cols=GRID_COLS, tile_height=2.5):
    """A figure of images in a grid, each titled; the tutorial shows 2 rows of 8."""
    rows = max(1, int(np.ceil(len(images) / cols)))
    fig = plt.figure(figsize=(2 * cols - 1, tile_height * rows - 1 + 0.5 * (titles[0].count("\n") if titles else 0)))
    for i, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        ax.imshow(image)
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def samples_figure(images, labels, classes, rng, count=GRID_COLS * GRID_ROWS):
    """Random training images titled with their class."""
    index = rng.choice(len(images), size=min(count, len(images)), replace=False)
    return image_grid(images[index], [classes[labels[i]] for i in index])


def predictions_figure(images, true_labels, predicted, scores, classes, rng, count=GRID_COLS * GRID_ROWS):
    """Random test images titled with predicted class, its score and the true class."""
    index = rng.choice(len(images), size=min(count, len(images)), replace=False)
    titles = [f"pred: {classes[predicted[i]]}\nscore: {scores[i]:.3}\ntrue: {classes[true_labels[i]]}" for i in index]
    return image_grid(images[index], titles, tile_height=3)


def confusion_figure(matrix, classes):
    """The confusion matrix with class names on both axes."""
    from sklearn.metrics import ConfusionMatrixDisplay  # scikit-learn takes seconds to import; only this needs it

    fig, ax = plt.subplots(figsize=(8, 7))
    ConfusionMatrixDisplay(matrix, display_labels=classes).plot(ax=ax, xticks_rotation=45, colorbar=True)
    ax.set_title("Confusion matrix", fontsize=16)
    fig.tight_layout()
    return fig
