"""Test-time augmentation: average the model's class scores over mirrored and shifted views.

As airbench94's evaluation does, the scores before the softmax (logits) are averaged, and the
softmax of that average is the prediction (averaging probabilities instead lets one confident
view outvote the others).

Level 0: the image alone; 1: the image and its mirror, equally weighted; 2: half
weight on those two, half on both of them shifted one pixel up-left and one pixel
down-right (reflected borders), as airbench's evaluation does.

Selective (hiverge/cifar10-speedrun's `tta`, at commit 5cd49b1): one plain pass over every image, then
the views only for the `fraction` of the images the plain pass is least confident about (its top
softmax probability); the others keep their plain scores. The confident images' predictions rarely
change with more views, so a quarter of the views' work gives most of their accuracy.
"""

import numpy as np

from cifar.core.params import Rule, fraction

# tta.<model>: each model's level (params.yaml)
TTA_LEVEL = Rule((int,), "0 (off), 1 (image and its mirror) or 2 (also shifted by a pixel)", minimum=0, maximum=2)
# evaluate.tta_fraction: the share of the images, least confident first, that get the views
TTA_FRACTION = fraction("a number from 0 to 1 (1: every image gets the views; 0.25: the least confident quarter)")


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


def predict(model, images, level, batch_size, fraction=1.0):
    """Class probabilities of `images`: the softmax of the class scores averaged over the views of `level`,
    for the `fraction` of the images least confident without views (all at 1), the plain scores for the rest."""
    from scipy.special import softmax

    if level == 0:
        return model.predict(images, batch_size=batch_size, verbose=0)
    scores = class_scores(model)
    if fraction >= 1:
        return softmax(averaged_scores(scores, images, level, batch_size), axis=1).astype(np.float32)
    total = scores(images, batch_size)
    least_confident = least_confident_indices(softmax(total, axis=1), int(len(images) * fraction))
    if len(least_confident):
        total[least_confident] = averaged_scores(scores, images[least_confident], level, batch_size)
    return softmax(total, axis=1).astype(np.float32)


def averaged_scores(scores, images, level, batch_size):
    """The class scores of `images` averaged over the views of `level` (float64)."""
    total = 0.0
    for weight, view in weighted_views(images, level):
        total = total + weight * scores(np.ascontiguousarray(view), batch_size)
    return total


def least_confident_indices(probabilities, count):
    """The indices of the `count` rows of `probabilities` whose top probability is lowest (ties: the first)."""
    return np.sort(np.argsort(probabilities.max(axis=1), kind="stable")[:count])


def class_scores(model):
    """(images, batch size) -> the model's class scores: the input of its final softmax layer, or else the
    log of its probabilities (the same scores up to a constant per image, which the softmax cancels)."""
    import keras

    from cifar.network.trained import final_softmax

    softmax_layer = final_softmax(model)
    if softmax_layer is not None:
        scores = keras.Model(model.inputs, softmax_layer.input)
        return lambda images, batch_size: scores.predict(images, batch_size=batch_size, verbose=0).astype(np.float64)

    def log_probabilities(images, batch_size):
        probabilities = model.predict(images, batch_size=batch_size, verbose=0).astype(np.float64)
        return np.log(np.maximum(probabilities, np.finfo(np.float64).tiny))

    return log_probabilities
