"""The robustness stage's corruptions against CIFAR-10-C's own code (tests/cifar_c_reference.py)."""

import numpy as np
import pytest
from scipy import ndimage

from cifar.core.params import load_params
from cifar.robustness.corruptions import CORRUPTIONS, corrupt, severity_parameters
from stages.robustness import ROBUSTNESS, SEVERITIES
from tests.cifar_c_reference import SEVERITIES as CIFAR_C_TABLE
from tests.cifar_c_reference import cifar_c_image
from tests.conftest import PROJECT


def fixed_images():
    """Noise, smooth natural-like images with saturated regions, and all-black and all-white images."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    smooth = ndimage.gaussian_filter(rng.normal(size=(8, 32, 32, 3)), (0, 2, 2, 0))
    smooth = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 320 - 30, 0, 255).astype(np.uint8)
    return np.concatenate([noise, smooth, np.zeros((1, 32, 32, 3), np.uint8), np.full((1, 32, 32, 3), 255, np.uint8)])


def defaults():
    return load_params({"robustness": ROBUSTNESS}, PROJECT / "params.yaml")["robustness"]


def as_reference_value(parameters):
    return parameters if len(parameters) > 1 else parameters[0]


def test_the_default_severities_are_cifar_c_s_table():
    settings = defaults()
    for name in CORRUPTIONS:
        assert [as_reference_value(p) for p in severity_parameters(settings, name)] == CIFAR_C_TABLE[name], name


# Every default severity, and values beyond the defaults (a user's own severities).
CASES = [(name, severity, CIFAR_C_TABLE[name][severity - 1]) for name in CORRUPTIONS for severity in range(1, 6)] + [
    ("gaussian_noise", 5, 0.3),
    ("defocus_blur", 5, (3, 0.8)),
    ("defocus_blur", 5, (0.8, 1.5)),
    ("contrast", 5, 0.05),
    ("brightness", 5, 0.6),
    ("jpeg_compression", 5, 10),
    ("pixelate", 5, 0.4),
]


@pytest.mark.parametrize("name, severity, value", CASES)
def test_each_corruption_equals_make_cifar_c_pixel_for_pixel(name, severity, value):
    images = fixed_images()
    parameters = value if isinstance(value, tuple) else (value,)
    ours = corrupt(images, name, parameters, seed=3, severity=severity)
    # The same noise: the generator that `corrupt` seeds, drawn image after image as the original does.
    rng = np.random.default_rng([3, CORRUPTIONS.index(name), severity])
    theirs = np.stack([cifar_c_image(image, name, value, rng) for image in images])
    assert ours.dtype == np.uint8
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_deterministic_and_worse_at_severity_5(name):
    settings, batch = defaults(), fixed_images()[:8]
    first, *_, fifth = severity_parameters(settings, name)
    once = corrupt(batch, name, fifth, seed=1, severity=5)
    np.testing.assert_array_equal(once, corrupt(batch, name, fifth, seed=1, severity=5))

    def change(corrupted):
        return np.abs(corrupted.astype(int) - batch).mean()

    assert change(once) > change(corrupt(batch, name, first, seed=1, severity=1)) > 0


def test_the_noise_depends_on_the_seed_and_severity_and_has_the_sigma_asked():
    batch = np.full((4, 32, 32, 3), 128, np.uint8)
    a, b = corrupt(batch, "gaussian_noise", 0.1, 0, 5), corrupt(batch, "gaussian_noise", 0.1, 1, 5)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, corrupt(batch, "gaussian_noise", 0.1, 0, 4))
    # Truncation lowers the mean by half a level; the spread is sigma in [0, 1] units.
    assert (a / 255.0).std() == pytest.approx(0.1, rel=0.03)


def test_pixelate_at_full_size_leaves_the_image():
    # (Not so the float ones: make_cifar_c.py's truncation to uint8 lowers some pixels by one level.)
    batch = fixed_images()
    np.testing.assert_array_equal(corrupt(batch, "pixelate", 1.0, seed=0, severity=1), batch)


def test_the_robustness_stage_applies_each_severity_s_parameters():
    from cifar.robustness.evaluation import corruption_accuracy

    settings = defaults()
    images = fixed_images()
    seen = []

    def predict(batch):
        seen.append(batch)
        return np.eye(10)[np.zeros(len(batch), int)]

    corruption_accuracy(predict, images, np.zeros(len(images), int), settings, progress=lambda _: None)
    assert len(seen) == 1 + len(CORRUPTIONS) * SEVERITIES
    np.testing.assert_array_equal(seen[0], images)
    for index, (name, severity) in enumerate((n, s) for n in CORRUPTIONS for s in range(1, 6)):
        parameters = severity_parameters(settings, name)[severity - 1]
        expected = corrupt(images, name, parameters, settings["seed"], severity)
        np.testing.assert_array_equal(seen[1 + index], expected, err_msg=f"{name} severity {severity}")
