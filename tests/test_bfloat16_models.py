"""Models trained in mixed_bfloat16 (what `train.precision: auto` picks on CPUs with AMX or
AVX512-BF16 and on recent GPUs) through export and predict. bfloat16 is emulated, slowly, on CPUs
without those units, so the models here are tiny; the whole pipeline in bfloat16 is
tests/test_pipeline.py's."""

import json

import keras
import numpy as np
import pytest

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.export.classifiers import load_classifier
from cifar.export.params import EXPORT
from cifar.models.saved import computes_in_bfloat16, float32_copy, load_trained_model
from tests.conftest import PROJECT, set_params
from tests.datagen import encode_image
from tests.helpers import prepare_workspace, train_in_workspace

# No temperature: its bounds below were measured on the models' own scores (test_calibration.py
# checks a bfloat16 model's temperature through the export).
TINY_FAST = {"epochs": 1, "batch_size": 32, "widths": [8, 16, 16], "warmup_epochs": 0.5, "calibration_images": 0}


@pytest.fixture(scope="module", params=["seed_cnn", "fast"])
def trained(request, tmp_path_factory):
    """A workspace holding a model trained in mixed_bfloat16, and the export stage's record of it."""
    from stages.export import export

    path = tmp_path_factory.mktemp(f"bf16-{request.param}")
    prepare_workspace(path, precision="mixed_bfloat16", train_images=200, test_images=100, model=request.param)
    if request.param == "fast":
        set_params(path, fast=TINY_FAST)
    train_in_workspace(path)
    settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
    record = export({**settings, "representative_images": 50, "latency_runs": 3}, Artifacts(path), lambda m: None)
    return path, record


def test_the_float32_copy_holds_the_same_weights_and_computes_in_float32(trained):
    path, _ = trained
    model = load_trained_model(Artifacts(path).model)
    assert computes_in_bfloat16(model)
    copy = float32_copy(model)
    assert not computes_in_bfloat16(copy) and {layer.compute_dtype for layer in copy.layers} == {"float32"}
    assert copy.inputs[0].dtype == "uint8" and [w.shape for w in copy.weights] == [w.shape for w in model.weights]
    for ours, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)  # the trained weights are float32 already: no rounding
    assert float32_copy(copy) is copy


def test_export_of_a_bfloat16_model_writes_float32_formats_that_agree_with_it(trained):
    path, record = trained
    artifacts = Artifacts(path)
    assert record["trained_precision"] == "mixed_bfloat16"
    assert json.loads(artifacts.export_record.read_text()) == record
    x_test = np.load(artifacts.prepared_array("x_test"))
    keras_probabilities = load_classifier(artifacts.model).predict(x_test)
    float32_probabilities = float32_copy(load_trained_model(artifacts.model)).predict(x_test, verbose=0)
    tflite = load_classifier(artifacts.tflite_float).predict(x_test)
    # The TFLite float32 model is the float32 copy, to float32's rounding.
    np.testing.assert_allclose(tflite, float32_probabilities, atol=1e-5)
    for path_, name in ((artifacts.saved_model, "saved_model"), (artifacts.tflite_float, "tflite_float32")):
        probabilities = load_classifier(path_).predict(x_test)
        agreement = np.mean(probabilities.argmax(axis=1) == keras_probabilities.argmax(axis=1))
        assert record[name]["agreement_with_keras"] == pytest.approx(agreement, abs=1e-6)
        # Against the model as trained, which rounds every layer's input to bfloat16's 8 bits. Measured on
        # these tiny models (AMD EPYC, AVX2): the largest probability difference 0.008 (seed_cnn) and 0.006
        # (fast); the top class agreed on 100 and 97 of the 100 images, the 3 being near ties of a nearly
        # untrained model. So: differences under 0.02, and the same top class wherever the trained model's
        # lead over its second class is larger than twice that. A wrong conversion (a layer dropped,
        # weights mixed up, augmentation left on) differs by tenths.
        assert np.abs(probabilities - keras_probabilities).max() < 0.02
        second, first = np.sort(keras_probabilities, axis=1)[:, -2:].T
        clear = first - second > 0.04
        np.testing.assert_array_equal(
            probabilities[clear].argmax(axis=1), keras_probabilities[clear].argmax(axis=1), err_msg=name
        )
        assert agreement >= 0.9
    interpreter = load_classifier(artifacts.tflite_float).interpreter
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    int8 = load_classifier(artifacts.tflite_int8).predict(x_test)
    assert np.mean(int8.argmax(axis=1) == keras_probabilities.argmax(axis=1)) >= 0.8  # as for float32 models


def test_predict_runs_every_format_of_a_bfloat16_model(trained, capsys):
    from stages.predict import main as predict

    path, _ = trained
    artifacts = Artifacts(path)
    image = path / "query.png"
    x_test = np.load(artifacts.prepared_array("x_test"))
    image.write_bytes(encode_image(x_test[0]))
    classes = json.loads(artifacts.model_classes.read_text())
    expected = classes[int(load_trained_model(artifacts.model).predict(x_test[:1], verbose=0).argmax())]
    for model in (artifacts.model, artifacts.saved_model, artifacts.tflite_float):
        assert cli.run(predict, ["--model", str(model), "--json", "--top", "1", str(image)]) == 0
        ranked = json.loads(capsys.readouterr().out)["predictions"][str(image)]
        assert ranked[0]["class"] == expected, model


def test_a_float32_model_is_exported_as_it_is():
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
    assert not computes_in_bfloat16(model) and float32_copy(model) is model
