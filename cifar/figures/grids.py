"""Grids of images with titles: the tutorial's sample images and prediction grid."""

import numpy as np

from cifar.figures import plt

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


def random_indices(total, rng, count=GRID_COLS * GRID_ROWS):
    """Which of `total` images a grid shows: `count` of them, drawn without replacement."""
    return rng.choice(total, size=min(count, total), replace=False)


def samples_figure(images, labels, classes, rng):
    """Random training images titled with their class."""
    index = random_indices(len(images), rng)
    return image_grid(images[index], [classes[labels[i]] for i in index])


def prediction_titles(true_labels, predicted, scores, classes):
    """Each image's predicted class, its score and the true class: the title of every grid of predictions
    (the prediction grid, the mistakes, and Grad-CAM's over both), so that each cell reads alone."""
    return [
        f"pred: {classes[p]}\nscore: {s:.3f}\ntrue: {classes[t]}" for t, p, s in zip(true_labels, predicted, scores)
    ]


def predictions_figure(images, true_labels, predicted, scores, classes):
    """Test images titled with predicted class, its score and the true class."""
    return image_grid(images, prediction_titles(true_labels, predicted, scores, classes), tile_height=3)
