"""Measurements that noise on a shared machine cannot fool: sides interleaved, medians compared.

One run per side is not a measurement here: on the same machine, the same training loop
measured 621 and 850 images/s minutes apart. So every row measures its sides in turn
(A B A B ..., at least three times each, every sample from the same kind of set-up), and
reports each side's median and spread, and the ratio of the medians.
"""

import statistics
import time

MIN_REPEATS = 3


def summary(samples):
    """Median, extremes and relative spread ((max - min) / median) of one side's samples."""
    median = statistics.median(samples)
    return {
        "median": round(median, 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "spread": round((max(samples) - min(samples)) / median, 3) if median else None,
        "samples": [round(value, 4) for value in samples],
    }


def interleaved(sides, repeats=MIN_REPEATS, progress=print):
    """Run each side's measure in turn, `repeats` rounds: {side: summary}.

    `sides` maps a name to a function of no arguments returning one sample (seconds,
    images/s, ...); the rounds alternate the sides so that a slow minute of the machine
    falls on both.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    samples = {name: [] for name in sides}
    for round_index in range(repeats):
        for name, measure in sides.items():
            samples[name].append(measure())
            progress(f"  round {round_index + 1}/{repeats} {name}: {samples[name][-1]:.4g}")
    return {name: summary(values) for name, values in samples.items()}


def ratio(ours, baseline, better):
    """How many times better ours is, by median: baseline/ours for times, ours/baseline for rates."""
    if better == "lower":
        return round(baseline["median"] / ours["median"], 2)
    return round(ours["median"] / baseline["median"], 2)


def seconds(function):
    """A measure that times `function()` in this process."""

    def measure():
        start = time.perf_counter()
        function()
        return time.perf_counter() - start

    return measure


def images_per_second(fit, count, epochs):
    """Training speed of `fit(epochs)` on `count` images: after a one-epoch warm-up (tracing and
    first-epoch allocations), the images of `epochs` epochs over their wall time."""
    fit(1)
    start = time.perf_counter()
    fit(epochs)
    return count * epochs / (time.perf_counter() - start)
