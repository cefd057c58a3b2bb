"""Bounds on the numbers a model trained in mixed_bfloat16 computes, against a float32 recomputation.

A model trained under `mixed_bfloat16` keeps float32 weights but rounds every layer's input to
bfloat16, which keeps 8 significant bits: each rounding is off by at most the unit roundoff
u = 2**-8 (relative). Two bfloat16 computations of the same numbers (the stage's batches of 256
and a test's of 16, say) must not be compared with each other: where bfloat16 is emulated (AVX2)
both round alike, but on CPUs with bfloat16 units (AVX512-BF16, AMX) oneDNN picks its kernels by
shape and batch size, and they round differently (a loss of 1.7752 against 1.7741 on a Zen 5).
The distance from the float32 copy of the same weights (cifar.models.saved.float32_copy), by
contrast, is bfloat16's own rounding, of the same size on every CPU: each bound below is that
distance, measured, with a margin, and written in units of u.

Measured on the suite's shared tiny models (tests/helpers.py: SHARED_TRAINING; 100 test images),
at test-time augmentation levels 0 and 2 and batch sizes 1, 16 and 256, on an AMD EPYC Zen 5, once
with its AVX512-BF16 units (oneDNN) and once emulated (TF_ENABLE_ONEDNN_OPTS=0, Eigen's kernels, as
on CPUs without the units): the two agree to within a fifth, while two bfloat16 paths differ by as
much as the distance itself (the seed_cnn loss 0.3906 with the units, 0.3927 emulated).

  largest measured          |p_bf16 - p_f32|, any class   mean |p_bf16 - p_f32|   |loss_bf16 - loss_f32|
  seed_cnn (T = 1)          0.0077 (2.0 u)                0.00057 (0.15 u)        0.0018 (0.46 u)
  airbench94_muon (8/16/16, 0.144  (37 u)                 0.0043  (1.1 u)         0.018  (4.6 u)
        T = 0.37)

airbench94_muon is ten times more sensitive: its class scores differ from float32's by 4.6% (the
seed_cnn's by 0.7%), from BatchNorm over 8 to 16 channels, GELU and a head that divides by its
inputs, and its temperature (0.37 here) multiplies the scores' error by 1/T before the softmax.
"""

import numpy as np

UNIT_ROUNDOFF = 2.0**-8

# Per model, each twice or more the largest distance measured above, and each under the
# error it must catch: for seed_cnn a probability off by 0.01 (a loss off by 0.01 / p, over 0.01),
# for airbench94_muon a temperature left out or a test-time augmentation level mixed up (tenths).
BOUNDS = {
    "seed_cnn": {
        "probability_max": 4 * UNIT_ROUNDOFF,
        "probability_mean": UNIT_ROUNDOFF / 2,
        "loss": UNIT_ROUNDOFF,  # 2.2 times the measured; a top probability off by 0.01 moves it 0.009
    },
    "airbench94_muon": {
        "probability_max": 80 * UNIT_ROUNDOFF,
        "probability_mean": 2.5 * UNIT_ROUNDOFF,
        "loss": 10 * UNIT_ROUNDOFF,
    },
}


def assert_probabilities_close(bfloat16, float32, model):
    """Class probabilities computed in bfloat16 against the float32 copy's on the same images."""
    bounds = BOUNDS[model]
    difference = np.abs(np.asarray(bfloat16, np.float64) - np.asarray(float32, np.float64))
    assert difference.max() <= bounds["probability_max"], f"largest difference {difference.max():.4g} ({model})"
    assert difference.mean() <= bounds["probability_mean"], f"mean difference {difference.mean():.4g} ({model})"


def near_ties(float32, model):
    """Which images' top class bfloat16's rounding may flip: those whose float32 lead over the second
    class is within twice the largest probability difference allowed."""
    second, first = np.sort(np.asarray(float32), axis=1)[:, -2:].T
    return first - second <= 2 * BOUNDS[model]["probability_max"]


def assert_same_top_class(bfloat16, float32, model):
    """The same top class as the float32 copy on every image but its near ties."""
    clear = ~near_ties(float32, model)
    np.testing.assert_array_equal(np.argmax(bfloat16, axis=1)[clear], np.argmax(float32, axis=1)[clear])


def assert_accuracy_close(accuracy, float32, labels, model):
    """An accuracy computed in bfloat16: the float32 copy's, give or take its near ties."""
    expected = np.mean(np.asarray(float32).argmax(axis=1) == labels)
    allowed = near_ties(float32, model).mean() + 1e-9
    assert abs(accuracy - expected) <= allowed, f"accuracy {accuracy} against float32's {expected} (± {allowed:.3f})"


def assert_loss_close(loss, float32, labels, model):
    """A mean cross-entropy (loss, NLL) computed in bfloat16 against the float32 copy's probabilities."""
    expected = -np.mean(np.log(np.asarray(float32, np.float64)[np.arange(len(labels)), labels]))
    bound = BOUNDS[model]["loss"]
    assert abs(loss - expected) <= bound, f"loss {loss} against float32's {expected:.6f} (± {bound:.4g}, {model})"
