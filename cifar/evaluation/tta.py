"""Test-time augmentation: average the model's class probabilities over mirrored and shifted views.

Level 0: the image alone; 1: the image and its mirror, equally weighted; 2: half
weight on those two, half on both of them shifted one pixel up-left and one pixel
down-right (reflected borders), as airbench's evaluation does.
"""

import numpy as np


def mirrored(images):
    return images[:, :, ::-1]


def shifted(images, dy, dx):
    """Images moved by (dy, dx) pixels of at most 1, the uncovered border filled by reflection."""
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    height, width = images.shape[1:3]
    return padded[:, 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]


def weighted_views(images, level):
    """[(weight, images)] of the views `level` averages; the weights sum to 1."""
    if level == 0:
        return [(1.0, images)]
    views = [(0.5, images), (0.5, mirrored(images))]
    if level == 1:
        return views
    translated = [shifted(images, 1, 1), shifted(images, -1, -1)]
    return [(weight / 2, view) for weight, view in views] + [
        (0.125, view) for image in translated for view in (image, mirrored(image))
    ]


def predict(model, images, level, batch_size):
    """Class probabilities of `images`, averaged over the views of `level`."""
    total = None
    for weight, view in weighted_views(images, level):
        probabilities = weight * model.predict(np.ascontiguousarray(view), batch_size=batch_size, verbose=0)
        total = probabilities if total is None else total + probabilities
    return total
