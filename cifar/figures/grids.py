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


def samples_figure(images, labels, classes, rng, count=GRID_COLS * GRID_ROWS):
    """Random training images titled with their class."""
    index = rng.choice(len(images), size=min(count, len(images)), replace=False)
    return image_grid(images[index], [classes[labels[i]] for i in index])


def predictions_figure(images, true_labels, predicted, scores, classes, rng, count=GRID_COLS * GRID_ROWS):
    """Random test images titled with predicted class, its score and the true class."""
    index = rng.choice(len(images), size=min(count, len(images)), replace=False)
    titles = [f"pred: {classes[predicted[i]]}\nscore: {scores[i]:.3}\ntrue: {classes[true_labels[i]]}" for i in index]
    return image_grid(images[index], titles, tile_height=3)
