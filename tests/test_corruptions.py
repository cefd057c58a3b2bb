"""The robustness stage's corruptions against CIFAR-10-C's own code (tests/cifar_c_reference.py)."""

import csv

import numpy as np
import pytest
from scipy import ndimage

from benchmarks.workspace import PROJECT
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.robustness.corruptions import CORRUPTIONS, corrupt, severity_parameters
from stages.robustness import ROBUSTNESS, SEVERITIES
from tests import summaries
from tests.cifar_c_reference import SEVERITIES as CIFAR_C_TABLE
from tests.cifar_c_reference import cifar_c_image
from tests.helpers import keras_probabilities


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


@pytest.fixture(scope="module")
def trained(trained_workspace):
    """The suite's shared seed_cnn workspace, trained well above chance (tests/helpers.py: SHARED_TRAINING)."""
    return trained_workspace("seed_cnn")


def test_robustness_stage_equals_cifar_c_s_corruptions_applied_to_the_model(trained):
    from stages.robustness import robustness

    artifacts = Artifacts(trained)
    settings = {**defaults(), "max_images": 40, "seed": 5}
    messages = []
    record = robustness(settings, artifacts, progress=messages.append)
    summaries.check_robustness(messages, record)
    # The same 40 images (a seeded choice, sorted), corrupted by CIFAR-10-C's own code, classified by the model
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    chosen = np.sort(np.random.default_rng(5).choice(len(y_test), size=40, replace=False))
    images, labels = x_test[chosen], y_test[chosen]

    def accuracy(batch):
        return np.mean(keras_probabilities(artifacts, batch).argmax(axis=1) == labels)

    assert record["clean_accuracy"] == pytest.approx(accuracy(images), abs=1e-6)
    expected = {}
    for index, name in enumerate(CORRUPTIONS):
        for severity in range(1, 6):
            value = settings[name][severity - 1]
            if name == "defocus_blur":
                value = (value, settings["defocus_blur_smoothing"][severity - 1])
            rng = np.random.default_rng([5, index, severity])
            corrupted = np.stack([cifar_c_image(image, name, value, rng) for image in images])
            expected[name, severity] = accuracy(corrupted)
            assert record["corruptions"][name][f"severity_{severity}"] == pytest.approx(expected[name, severity])
    assert record["mean_corruption_accuracy"] == pytest.approx(np.mean(list(expected.values())), abs=1e-6)
    assert len(set(expected.values())) > 1  # the corruptions change some predictions
    table = list(csv.DictReader(artifacts.robustness_data.open()))
    np.testing.assert_allclose(
        [[float(row[name]) for name in CORRUPTIONS] for row in table],
        [[expected[name, severity] for name in CORRUPTIONS] for severity in range(1, 6)],
        atol=1e-6,
    )
    first = artifacts.robustness_record.read_text()
    robustness(settings, artifacts, progress=lambda m: None)
    assert artifacts.robustness_record.read_text() == first


@pytest.mark.parametrize("published", [False, True], ids=["generated", "published"])
def test_the_record_s_means_on_results_where_every_statistic_differs(published):
    """Every corruption at every severity a different accuracy, so a mean over the wrong axis, over the wrong
    group of corruptions, or under another name, shows: each mean against numpy's on the same numbers."""
    from cifar.robustness.evaluation import robustness_record
    from cifar.robustness.published import BENCHMARK, EXTRA

    names = [*BENCHMARK, *EXTRA] if published else list(CORRUPTIONS)
    values = np.random.default_rng(3).random((len(names), 5))
    results = {name: row.tolist() for name, row in zip(names, values)}
    record = robustness_record(0.93, results, "cifar-10-c.yaml", 100) if published else robustness_record(0.93, results)
    assert record["clean_accuracy"] == 0.93 and record["mean_corruption_accuracy"] == round(values.mean(), 6)
    for name, row in zip(names, values):
        assert record["corruptions"][name] == {
            "mean": round(row.mean(), 6),
            **{f"severity_{s}": round(row[s - 1], 6) for s in range(1, 6)},
        }
    if published:
        benchmark, extra = values[: len(BENCHMARK)].mean(), values[len(BENCHMARK) :].mean()
        assert record["mean_benchmark_corruption_accuracy"] == round(benchmark, 6)
        assert record["mean_extra_corruption_accuracy"] == round(extra, 6)
        assert record["source"] == "cifar-10-c.yaml" and record["images_per_severity"] == 100
        assert len({benchmark, extra, values.mean()}) == 3
    # the statistics differ from one another, so none can stand in for another
    per_corruption, per_severity = values.mean(axis=1), values.mean(axis=0)
    assert len(set(np.round(per_corruption, 6))) == len(names) and len(set(np.round(per_severity, 6))) == 5
    assert values.mean() not in set(per_corruption) | set(per_severity)
