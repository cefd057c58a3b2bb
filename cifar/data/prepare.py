"""The prepared arrays: a class-balanced subset of a dataset, as uint8, with its pixel statistics.

Images stay uint8 (a quarter of float32's memory); the models normalise them themselves
(x/255 - 0.5, as the tutorial does), so a saved model takes raw pixels.
"""

import numpy as np

from cifar.core.errors import PipelineError


def balanced_subset(labels, max_images, rng):
    """Indices of at most `max_images` items, spread evenly over the classes, in original order.

    Each class gets max_images // classes items; the remainder goes one each to
    randomly chosen classes. Classes with too few items give what they have.
    """
    if max_images is None or max_images >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    quota = np.full(len(classes), max_images // len(classes))
    quota[rng.choice(len(classes), size=max_images % len(classes), replace=False)] += 1
    chosen = []
    for cls, count in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def normalized_stats(images):
    """Mean and std of x/255 - 0.5 over all pixels: the tutorial's np.mean(x_train2), np.std(x_train2).

    Exact integer sums over chunks, with no float copy of the whole dataset.
    """
    total = squares = 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].astype(np.uint32)
        total += int(chunk.sum(dtype=np.uint64))
        squares += int(np.square(chunk).sum(dtype=np.uint64))
    count = images.size
    mean = total / count
    std = np.sqrt(max(squares / count - mean**2, 0.0))
    return {"mean": float(mean / 255 - 0.5), "std": float(std / 255)}


def subsets(dataset, settings, rng):
    """{x_train, y_train, x_test, y_test} of the `preprocess` settings' class-balanced subsets."""
    train = balanced_subset(dataset.y_train, settings["max_train_images"], rng)
    test = balanced_subset(dataset.y_test, settings["max_test_images"], rng)
    arrays = {
        "x_train": dataset.x_train[train],
        "y_train": dataset.y_train[train],
        "x_test": dataset.x_test[test],
        "y_test": dataset.y_test[test],
    }
    if len(arrays["x_train"]) == 0 or len(arrays["x_test"]) == 0:
        raise PipelineError("the dataset has no train or no test images")
    return arrays
