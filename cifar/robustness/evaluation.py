"""The model's accuracy on the corrupted test images, every corruption at every severity: generated
here, or read from the published CIFAR-10-C a chunk at a time."""

import time

import numpy as np

from cifar.robustness.corruptions import CORRUPTIONS, corrupt, severity_parameters
from cifar.robustness.published import BENCHMARK, EXTRA, SEVERITIES

CHUNK = 2000  # published images read from their memory map and classified at a time (6 MB)


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


def published_accuracy(predict, published, labels, progress=print):
    """{corruption: [accuracy at severity 1..5]} of `predict` on every image of each severity's block of the
    published set (`labels`: the model's class indices), CHUNK images at a time, with progress and time left."""
    per_severity, total, start = published.per_severity, len(published.arrays) * SEVERITIES, time.perf_counter()
    results, done = {}, 0
    for name, images in published.arrays.items():
        results[name] = []
        for severity in range(1, SEVERITIES + 1):
            block = slice((severity - 1) * per_severity, severity * per_severity)
            results[name].append(accuracy_of(predict, images[block], labels[block]))
            done, elapsed = done + 1, time.perf_counter() - start
            progress(
                f"[{done}/{total}] {name} severity {severity}: accuracy {results[name][-1]:.4f} "
                f"({elapsed:.0f} s, about {elapsed / done * (total - done):.0f} s left)"
            )
    return results


def accuracy_of(predict, images, labels):
    """The accuracy of `predict` on `images` (in memory, or memory-mapped), read CHUNK at a time."""
    correct = sum(
        int(np.sum(predict(np.asarray(images[i : i + CHUNK])).argmax(axis=1) == labels[i : i + CHUNK]))
        for i in range(0, len(images), CHUNK)
    )
    return correct / len(images)


def robustness_record(clean, results, source=None, per_severity=None):
    """reports/robustness.json: the mean over every corruption and severity, and each in detail; for the
    published set (`source`), also its images per severity and the means over BENCHMARK and over EXTRA."""

    def mean(names):
        return round(float(np.mean([a for name in names for a in results[name]])), 6)

    record = {"clean_accuracy": round(clean, 6), "mean_corruption_accuracy": mean(results)}
    if source is not None:
        record = {
            "source": source,
            "images_per_severity": per_severity,
            **record,
            "mean_benchmark_corruption_accuracy": mean(BENCHMARK),
            "mean_extra_corruption_accuracy": mean(EXTRA),
        }
    return {
        **record,
        "corruptions": {
            name: {
                "mean": round(float(np.mean(values)), 6),
                **{f"severity_{i}": round(a, 6) for i, a in enumerate(values, 1)},
            }
            for name, values in results.items()
        },
    }
