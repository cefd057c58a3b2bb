"""The rules of params.yaml's `visualize` section (each key is documented in params.yaml)."""

from cifar.core.params import Rule, non_negative_int, positive_int, positive_number

VISUALIZE = {
    "iterations": positive_int("an integer from 1 to 10000", maximum=10_000),
    "step": positive_number(),
    "seed": non_negative_int(),
    "jitter": Rule((int,), "an integer from 0 to 16 (pixels; 0 = off)", minimum=0, maximum=16),
    "blur_sigma": Rule((int, float), "a number from 0 to 5 (pixels; 0 = off)", minimum=0, maximum=5),
}
