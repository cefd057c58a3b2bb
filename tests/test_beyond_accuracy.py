"""Beyond accuracy: calibration, failure modes, Grad-CAM, corruptions, and the exported models."""

import csv
import json

import keras
import numpy as np
import pytest

from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.evaluation.calibration import expected_calibration_error, negative_log_likelihood, reliability_bins
from cifar.evaluation.failures import most_confident_mistakes, per_class_accuracy
from cifar.evaluation.gradcam import grad_cam
from cifar.export.classifiers import load_classifier
from cifar.export.params import EXPORT
from cifar.models.inputs import normalized_input
from cifar.robustness.corruptions import CORRUPTIONS, corrupt
from cifar.robustness.params import ROBUSTNESS
from tests.conftest import PROJECT
from tests.helpers import prepare_workspace, train_in_workspace


def test_ece_of_a_case_computed_by_hand():
    # Two classes; confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (wrong).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 1])
    # 15 bins: 0.9 falls in (13/15, 14/15], 0.6 and 0.55 in (8/15, 9/15]. Each bin: half right.
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |0.5 - (0.6 + 0.55) / 2| = 0.2 + 0.0375
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.2375)
    counts = [count for _, _, count, _, _ in reliability_bins(probabilities, labels)]
    assert counts[13] == 2 and counts[8] == 2 and sum(counts) == 4
    nll = -(np.log(0.9) + np.log(0.1) + np.log(0.6) + np.log(0.45)) / 4
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(nll)


def test_a_confidence_on_a_bin_edge_belongs_to_the_lower_bin():
    probabilities = np.array([[2 / 3, 1 / 3], [1.0, 0.0]])  # 2/3 = 10/15: the upper edge of bin 10
    bins = reliability_bins(probabilities, np.array([0, 0]))
    assert bins[9][2] == 1 and bins[14][2] == 1
    assert expected_calibration_error(probabilities, np.array([0, 0])) == pytest.approx((1 / 3) / 2)


def test_the_most_confident_mistakes_come_first_and_accuracy_is_per_class():
    probabilities = np.array([[0.6, 0.4], [0.1, 0.9], [0.95, 0.05], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 0])
    assert most_confident_mistakes(probabilities, labels, 5).tolist() == [2, 3, 0]
    assert most_confident_mistakes(probabilities, labels, 1).tolist() == [2]
    np.testing.assert_allclose(per_class_accuracy(probabilities.argmax(1), labels, 3), [0.0, 1 / 3, np.nan])


def images(count=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


def defaults():
    return load_params({"robustness": ROBUSTNESS}, PROJECT / "params.yaml")["robustness"]


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_each_corruption_is_deterministic_and_worse_at_severity_5(name):
    settings, batch = defaults(), images()
    first = corrupt(batch, name, settings[name][0], seed=1, severity=1)
    fifth = corrupt(batch, name, settings[name][4], seed=1, severity=5)
    assert first.shape == batch.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(fifth, corrupt(batch, name, settings[name][4], seed=1, severity=5))

    def change(corrupted):
        return np.abs(corrupted.astype(int) - batch).mean()

    assert change(fifth) > change(first) > 0


@pytest.mark.parametrize("name, identity", [("contrast", 1.0), ("brightness", 0.0), ("pixelate", 1.0)])
def test_a_corruption_at_zero_strength_leaves_the_image(name, identity):
    batch = images()
    np.testing.assert_array_equal(corrupt(batch, name, identity, seed=0, severity=1), batch)


def test_gaussian_noise_differs_with_the_seed_and_brightness_keeps_the_hue():
    batch = images()
    assert not np.array_equal(corrupt(batch, "gaussian_noise", 0.1, 0, 5), corrupt(batch, "gaussian_noise", 0.1, 1, 5))
    colour = np.zeros((1, 32, 32, 3), np.uint8)
    colour[...] = (100, 50, 25)
    brighter = corrupt(colour, "brightness", 0.2, 0, 4)[0, 0, 0].astype(float)
    np.testing.assert_allclose(brighter / brighter[0], [1, 0.5, 0.25], atol=0.02)  # same hue and saturation
    assert brighter.max() == pytest.approx(100 + 0.2 * 255, abs=1)  # value up by 0.2


def halves_model():
    """Class 0's score is the mean of filter 0, which sees red; class 1's of filter 1, which sees blue."""
    inputs, x = normalized_input()
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")
    x = keras.layers.ReLU(name="relu")(conv(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, use_bias=False, name="scores")
    outputs = keras.layers.Activation("softmax")(dense(x))
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.array([[[[1, 0], [0, 0], [0, 1]]]], np.float32)])  # red -> filter 0, blue -> filter 1
    dense.set_weights([np.eye(2, dtype=np.float32)])
    return model


def test_gradcam_points_at_the_evidence_for_the_class_asked():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[:, :, :16, 0] = 255  # red left half: class 0's evidence
    image[:, :, 16:, 2] = 255  # blue right half: class 1's
    model = halves_model()
    heatmaps = grad_cam(model, np.repeat(image, 2, axis=0), [0, 1])
    assert heatmaps.shape == (2, 32, 32) and heatmaps.min() >= 0 and heatmaps.max() == pytest.approx(1)
    left, right = heatmaps[:, :, :16].mean(axis=(1, 2)), heatmaps[:, :, 16:].mean(axis=(1, 2))
    assert left[0] > 5 * right[0] and right[1] > 5 * left[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("beyond")
    prepare_workspace(path, precision="float32", train_images=200, test_images=60, epochs=2)
    train_in_workspace(path)
    return path


def test_evaluate_writes_calibration_failures_and_explanations(trained):
    from stages.evaluate import evaluate

    artifacts = Artifacts(trained)
    metrics = evaluate({"batch_size": 64, "seed": 0, "mistakes": 8}, 0, artifacts)
    rows = list(csv.DictReader(artifacts.reliability_data.open()))
    total = sum(int(row["images"]) for row in rows)
    ece = sum(int(r["images"]) / total * abs(float(r["accuracy"]) - float(r["confidence"])) for r in rows)
    assert total == 60 and ece == pytest.approx(metrics["ece"], abs=1e-5) and metrics["nll"] > 0
    per_class = {
        row["class"]: float(row["accuracy"]) for row in csv.DictReader(artifacts.per_class_accuracy_data.open())
    }
    assert per_class == pytest.approx(
        {name: values["recall"] for name, values in metrics["per_class"].items()}, abs=1e-5
    )
    for figure in ("reliability", "per_class_accuracy", "mistakes", "gradcam", "gradcam_mistakes"):
        assert getattr(artifacts, f"{figure}_figure").read_bytes()[:4] == b"\x89PNG"


def test_robustness_stage_is_deterministic(trained):
    from stages.robustness import robustness

    artifacts = Artifacts(trained)
    settings = {**defaults(), "max_images": 40}
    record = robustness(settings, artifacts, progress=lambda m: None)
    assert set(record["corruptions"]) == set(CORRUPTIONS)
    values = [record["corruptions"][name][f"severity_{s}"] for name in CORRUPTIONS for s in range(1, 6)]
    assert record["mean_corruption_accuracy"] == pytest.approx(np.mean(values), abs=1e-5)
    table = list(csv.DictReader(artifacts.robustness_data.open()))
    assert [row["severity"] for row in table] == ["1", "2", "3", "4", "5"]
    first = artifacts.robustness_record.read_text()
    robustness(settings, artifacts, progress=lambda m: None)
    assert artifacts.robustness_record.read_text() == first


def test_exported_models_agree_with_keras(trained, capsys):
    from cifar.core import cli
    from stages.export import export
    from stages.predict import main as predict

    artifacts = Artifacts(trained)
    settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
    record = export({**settings, "latency_runs": 5}, artifacts, progress=lambda m: None)
    assert json.loads(artifacts.export_record.read_text()) == record
    x_test = np.load(artifacts.prepared_array("x_test"))
    keras_top = load_classifier(artifacts.model).predict(x_test).argmax(axis=1)
    for path in (artifacts.saved_model, artifacts.tflite_float):  # float: the same top-1 on every test image
        np.testing.assert_array_equal(load_classifier(path).predict(x_test).argmax(axis=1), keras_top)
        assert record["saved_model" if path.is_dir() else "tflite_float32"]["agreement_with_keras"] == 1.0
    int8 = load_classifier(artifacts.tflite_int8).predict(x_test)
    agreement = np.mean(int8.argmax(axis=1) == keras_top)
    # Measured on this tiny model: 0.95-1.0; quantisation may flip near ties, not half the answers.
    assert record["tflite_int8"]["agreement_with_keras"] == pytest.approx(agreement) and agreement >= 0.8
    assert record["tflite_int8"]["size_mb"] < record["tflite_float32"]["size_mb"] / 3
    assert all(record[name]["latency_ms"] > 0 for name in ("keras", "saved_model", "tflite_float32", "tflite_int8"))
    # predict runs every format, and they name the same class for the same image
    image = trained / "query.png"
    from PIL import Image

    Image.fromarray(x_test[0]).save(image)
    tops = []
    for model in (artifacts.model, artifacts.saved_model, artifacts.tflite_float, artifacts.tflite_int8):
        assert cli.run(predict, ["--model", str(model), "--json", "--top", "1", str(image)]) == 0
        tops.append(json.loads(capsys.readouterr().out)["predictions"][str(image)][0]["class"])
    assert len(set(tops[:3])) == 1
