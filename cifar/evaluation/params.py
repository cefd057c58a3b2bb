"""The rules of params.yaml's `evaluate` and `tta` sections (each key is documented in params.yaml)."""

from cifar.core.params import Rule, non_negative_int, positive_int

EVALUATE = {
    "batch_size": positive_int(),
    "seed": non_negative_int(),
    "mistakes": positive_int("an integer from 1 to 64", maximum=64),
}

# tta.<model>: the test-time augmentation of each model
TTA_LEVEL = Rule((int,), "0 (off), 1 (image and its mirror) or 2 (also shifted by a pixel)", minimum=0, maximum=2)
