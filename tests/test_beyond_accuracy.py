"""Beyond accuracy: calibration, failure modes, Grad-CAM, corruptions, and the exported models."""

import csv
import json

import keras
import numpy as np
import pytest

from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.evaluation.gradcam import grad_cam
from cifar.evaluation.metrics import most_confident_mistakes, per_class_accuracy
from cifar.evaluation.reliability import expected_calibration_error, negative_log_likelihood, reliability_bins
from cifar.network.layers import normalized_input
from cifar.robustness.corruptions import CORRUPTIONS
from stages.export import EXPORT
from stages.robustness import ROBUSTNESS
from tests.conftest import PROJECT


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


def robustness_defaults():
    return load_params({"robustness": ROBUSTNESS}, PROJECT / "params.yaml")["robustness"]


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
def trained(trained_workspace):
    """The suite's shared seed_cnn workspace, trained well above chance (tests/helpers.py: SHARED_TRAINING)."""
    return trained_workspace("seed_cnn")


def keras_probabilities(artifacts, images):
    return keras.saving.load_model(artifacts.model, compile=False).predict(images, verbose=0).astype(np.float64)


def test_evaluate_writes_calibration_failures_and_explains_the_predicted_class(trained, monkeypatch):
    import cifar.evaluation.gradcam
    from stages.evaluate import evaluate

    explained = []  # (images, classes) of each Grad-CAM figure, as the stage asked for them
    real_grad_cam = cifar.evaluation.gradcam.grad_cam

    def recording_grad_cam(model, images, classes, **options):
        explained.append((np.array(images), np.array(classes)))
        return real_grad_cam(model, images, classes, **options)

    monkeypatch.setattr(cifar.evaluation.gradcam, "grad_cam", recording_grad_cam)
    artifacts = Artifacts(trained)
    metrics = evaluate({"batch_size": 64, "seed": 0, "mistakes": 8}, 0, artifacts)

    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    probabilities = keras_probabilities(artifacts, x_test)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    # The reliability table: each bin's images, accuracy and confidence recomputed from the model
    rows = list(csv.DictReader(artifacts.reliability_data.open()))
    assert sum(int(row["images"]) for row in rows) == len(y_test)
    for row in rows:
        centre = float(row["bin"])
        members = (confidence > centre - 1 / 30) & (confidence <= centre + 1 / 30)
        assert int(row["images"]) == members.sum() > 0
        assert float(row["accuracy"]) == pytest.approx(np.mean(predicted[members] == y_test[members]), abs=1e-6)
        assert float(row["confidence"]) == pytest.approx(confidence[members].mean(), abs=1e-5)
    per_class = {
        row["class"]: float(row["accuracy"]) for row in csv.DictReader(artifacts.per_class_accuracy_data.open())
    }
    assert per_class == pytest.approx(
        {name: np.mean(predicted[y_test == k] == k) for k, name in enumerate(artifacts.load_classes())}, abs=1e-6
    )
    assert metrics["nll"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(len(y_test)), y_test])), abs=1e-4)
    for figure in ("reliability", "per_class_accuracy", "mistakes", "gradcam", "gradcam_mistakes"):
        assert getattr(artifacts, f"{figure}_figure").read_bytes()[:4] == b"\x89PNG"
    # Grad-CAM explains the class the model predicts: on the mistakes' figure that is never the true one
    (shown, shown_classes), (mistakes, mistake_classes) = explained
    assert len(shown) == 16 and len(mistakes) > 0
    for images, classes in explained:
        np.testing.assert_array_equal(classes, keras_probabilities(artifacts, images).argmax(axis=1))
    truth = {image.tobytes(): label for image, label in zip(x_test, y_test)}
    assert all(truth[image.tobytes()] != label for image, label in zip(mistakes, mistake_classes))


def test_robustness_stage_equals_cifar_c_s_corruptions_applied_to_the_model(trained):
    from stages.robustness import robustness
    from tests.cifar_c_reference import cifar_c_image

    artifacts = Artifacts(trained)
    settings = {**robustness_defaults(), "max_images": 40, "seed": 5}
    record = robustness(settings, artifacts, progress=lambda m: None)
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


def run_tflite_directly(path, images):
    """The LiteRT interpreter on its own, one image at a time: (outputs as stored, input and output details)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for image in images:
        interpreter.set_tensor(given["index"], image[None])
        interpreter.invoke()
        results.append(interpreter.get_tensor(output["index"])[0])
    return np.stack(results), given, output


def test_export_writes_formats_whose_accuracy_is_recomputed_from_the_files(trained, capsys):
    import tensorflow as tf

    from stages.export import export

    artifacts = Artifacts(trained)
    settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
    record = export({**settings, "latency_runs": 5}, artifacts, progress=lambda m: None)
    assert json.loads(artifacts.export_record.read_text()) == record
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)

    # Each format run from its file, without the project's loaders
    keras_probs = keras_probabilities(artifacts, x_test)
    serve = tf.saved_model.load(str(artifacts.saved_model)).signatures["serve"]
    saved_probs = next(iter(serve(tf.constant(x_test)).values())).numpy()
    float_probs, float_in, _ = run_tflite_directly(artifacts.tflite_float, x_test)
    int8_out, int8_in, int8_output = run_tflite_directly(artifacts.tflite_int8, x_test)
    # The int8 model takes raw uint8 pixels (no quantisation parameters: the model's own first layer
    # normalises them, as in Keras) and returns uint8 probabilities, q * scale for q in 0..255
    assert float_in["dtype"] == np.uint8 and int8_in["dtype"] == np.uint8
    assert int8_in["quantization"] == (0.0, 0) and int8_output["dtype"] == np.uint8
    scale, zero_point = int8_output["quantization"]
    assert zero_point == 0 and scale == pytest.approx(1 / 256)
    int8_probs = int8_out.astype(np.float64) * scale
    np.testing.assert_allclose(int8_probs.sum(axis=1), 1, atol=0.05)
    np.testing.assert_allclose(int8_probs, keras_probs, atol=0.1)  # measured: 0.03 at most

    keras_top = keras_probs.argmax(axis=1)
    for name, probs in (
        ("keras", keras_probs),
        ("saved_model", saved_probs),
        ("tflite_float32", float_probs),
        ("tflite_int8", int8_probs),
    ):
        predicted = probs.argmax(axis=1)
        assert record[name]["accuracy"] == pytest.approx(np.mean(predicted == y_test), abs=1e-6), name
        assert record[name]["agreement_with_keras"] == pytest.approx(np.mean(predicted == keras_top), abs=1e-6)
    np.testing.assert_allclose(saved_probs, keras_probs, atol=1e-5)
    np.testing.assert_allclose(float_probs, keras_probs, atol=1e-5)
    assert record["tflite_int8"]["agreement_with_keras"] >= 0.9  # quantisation flips near ties only
    assert record["keras"]["accuracy"] >= 0.5
    assert record["tflite_int8"]["size_mb"] < record["tflite_float32"]["size_mb"] / 3
    assert record["tflite_float32"]["size_mb"] == round(artifacts.tflite_float.stat().st_size / 2**20, 3)


def test_latency_is_the_median_of_the_timed_runs_after_the_warm_up(monkeypatch):
    import cifar.export.classifiers as classifiers

    clock = [0.0]
    # Five slow warm-ups, then five timed runs whose median is 3 ms
    durations = iter([5.0] * 5 + [0.003, 0.001, 0.002, 0.010, 0.004])

    class Classifier:
        def predict(self, batch):
            assert batch.shape == (1, 32, 32, 3)
            clock[0] += next(durations)

    monkeypatch.setattr(classifiers.time, "perf_counter", lambda: clock[0])
    image = np.zeros((32, 32, 3), np.uint8)
    assert classifiers.single_image_latency(Classifier(), image, runs=5) == pytest.approx(0.003)


def test_predict_runs_every_exported_format_and_each_names_keras_s_class(trained, tmp_path, capsys):
    from PIL import Image

    from cifar.core import cli
    from stages.export import export
    from stages.predict import main as predict

    artifacts = Artifacts(trained)
    if not artifacts.tflite_int8.exists():
        settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
        export({**settings, "latency_runs": 1}, artifacts, progress=lambda m: None)
    x_test = np.load(artifacts.x_test)
    probabilities = keras_probabilities(artifacts, x_test)
    ordered = np.sort(probabilities, axis=1)
    # A fixed set: the test images the model ranks first by a clear lead, which int8 rounding cannot flip
    clear = np.flatnonzero(ordered[:, -1] - ordered[:, -2] > 0.2)[:12]
    assert len(clear) >= 8
    paths = []
    for index in clear:
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(x_test[index]).save(paths[-1])
    classes = artifacts.load_classes()
    expected = [classes[k] for k in probabilities[clear].argmax(axis=1)]
    for model in (artifacts.model, artifacts.saved_model, artifacts.tflite_float, artifacts.tflite_int8):
        assert cli.run(predict, ["--model", str(model), "--json", "--top", "1", *paths]) == 0
        predictions = json.loads(capsys.readouterr().out)["predictions"]
        assert [predictions[path][0]["class"] for path in paths] == expected, model
