"""The model's accuracy on the corrupted test images, every corruption at every severity."""

import numpy as np

from cifar.robustness.corruptions import CORRUPTIONS, corrupt, severity_parameters


def test_subset(labels, max_images, seed):
    """Indices of at most `max_images` test images, a seeded random choice, in order."""
    if max_images is None or max_images >= len(labels):
        return np.arange(len(labels))
    return np.sort(np.random.default_rng(seed).choice(len(labels), size=max_images, replace=False))


def corruption_accuracy(predict, images, labels, settings, progress=print):
    """(clean accuracy, {corruption: [accuracy at severity 1..5]}) of `predict` (images -> probabilities)."""

    def accuracy(batch):
        return float(np.mean(predict(batch).argmax(axis=1) == labels))

    clean = accuracy(images)
    results = {}
    for name in CORRUPTIONS:
        results[name] = [
            accuracy(corrupt(images, name, parameter, settings["seed"], severity))
            for severity, parameter in enumerate(severity_parameters(settings, name), start=1)
        ]
        progress(f"{name}: accuracy {' '.join(f'{a:.3f}' for a in results[name])} at severities 1-5")
    return clean, results


def robustness_record(clean, results):
    """reports/robustness.json: the mean over every corruption and severity, and each in detail."""
    return {
        "clean_accuracy": round(clean, 6),
        "mean_corruption_accuracy": round(float(np.mean([a for values in results.values() for a in values])), 6),
        "corruptions": {
            name: {
                "mean": round(float(np.mean(values)), 6),
                **{f"severity_{i}": round(a, 6) for i, a in enumerate(values, 1)},
            }
            for name, values in results.items()
        },
    }
