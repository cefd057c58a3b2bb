"""The export stage: every format's accuracy recomputed from its file, run without the project's loaders;
latency as the median after the warm-up; predict runs every exported format."""

import json

import numpy as np
import pytest

from benchmarks.workspace import PROJECT
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from stages.export import EXPORT
from tests import summaries
from tests.helpers import keras_probabilities


@pytest.fixture(scope="module")
def trained(trained_workspace):
    """The suite's shared seed_cnn workspace, trained well above chance (tests/helpers.py: SHARED_TRAINING)."""
    return trained_workspace("seed_cnn")


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
    messages = []
    record = export({**settings, "latency_runs": 5}, artifacts, progress=messages.append)
    assert json.loads(artifacts.export_record.read_text()) == record
    summaries.check_export(messages, record, ("keras", "saved_model", "tflite_float32", "tflite_int8"))
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
