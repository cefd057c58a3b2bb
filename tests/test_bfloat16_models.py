"""Models trained in mixed_bfloat16 (what `train.precision: auto` picks on CPUs with AMX or
AVX512-BF16 and on recent GPUs) through export and predict. bfloat16 is emulated, slowly, on CPUs
without those units, so the models here are tiny; the whole pipeline in bfloat16 is
tests/test_pipeline.py's."""

import json

import keras
import numpy as np
import pytest
import yaml

from benchmarks.workspace import PROJECT
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.export.classifiers import load_classifier
from cifar.network.trained import computes_in_bfloat16, float32_copy, load_trained_model
from stages.evaluate import EVALUATE
from stages.export import EXPORT
from tests import bfloat16_bounds
from tests.datagen import encode_image
from tests.helpers import assert_test_metrics_are_the_models


@pytest.fixture(scope="module", params=["seed_cnn", "airbench94_muon"])
def trained(request, trained_workspace):
    """A workspace holding a model trained in mixed_bfloat16 (the suite's shared one), and the export
    stage's record of it."""
    from stages.export import export

    path = trained_workspace(request.param, "mixed_bfloat16")
    settings = load_params({"export": EXPORT}, PROJECT / "params.yaml")["export"]
    record = export({**settings, "representative_images": 50, "latency_runs": 3}, Artifacts(path), lambda m: None)
    return path, record, request.param


def test_the_float32_copy_holds_the_same_weights_and_computes_in_float32(trained):
    path, _, _ = trained
    model = load_trained_model(Artifacts(path).model)
    assert computes_in_bfloat16(model)
    copy = float32_copy(model)
    assert not computes_in_bfloat16(copy) and {layer.compute_dtype for layer in copy.layers} == {"float32"}
    assert copy.inputs[0].dtype == "uint8" and [w.shape for w in copy.weights] == [w.shape for w in model.weights]
    for ours, theirs in zip(copy.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)  # the trained weights are float32 already: no rounding
    assert float32_copy(copy) is copy


def test_evaluate_of_a_bfloat16_model_reports_its_float32_copy_s_numbers_within_bfloat16_s_error(trained):
    """The evaluate stage on the model as trained (bfloat16), at its TTA level, against the float32 copy."""
    from stages.evaluate import evaluate

    path, _, model_name = trained
    params = load_params({"evaluate": EVALUATE}, path / "params.yaml")
    level = yaml.safe_load((path / "params.yaml").read_text())["tta"][model_name]
    metrics = evaluate(params["evaluate"], level, Artifacts(path))
    assert_test_metrics_are_the_models(path, metrics)


def test_export_of_a_bfloat16_model_writes_float32_formats_that_agree_with_it(trained):
    path, record, model_name = trained
    artifacts = Artifacts(path)
    assert record["trained_precision"] == "mixed_bfloat16"
    assert json.loads(artifacts.export_record.read_text()) == record
    x_test, y_test = np.load(artifacts.prepared_array("x_test")), np.load(artifacts.prepared_array("y_test"))
    keras_probabilities = load_classifier(artifacts.model).predict(x_test)
    float32_probabilities = float32_copy(load_trained_model(artifacts.model)).predict(x_test, verbose=0)
    # The model as trained rounds every layer's input to bfloat16: against the float32 copy of its
    # weights, within bfloat16's own error (tests/bfloat16_bounds.py), whatever the CPU's kernels
    bfloat16_bounds.assert_probabilities_close(keras_probabilities, float32_probabilities, model_name)
    bfloat16_bounds.assert_same_top_class(keras_probabilities, float32_probabilities, model_name)
    keras_top = keras_probabilities.argmax(axis=1)
    for path_, name in ((artifacts.saved_model, "saved_model"), (artifacts.tflite_float, "tflite_float32")):
        probabilities = load_classifier(path_).predict(x_test)
        # Each float32 format is the float32 copy, to float32's rounding (measured: 1e-7)
        np.testing.assert_allclose(probabilities, float32_probabilities, atol=1e-5, err_msg=name)
        predicted = probabilities.argmax(axis=1)
        assert record[name]["accuracy"] == pytest.approx(np.mean(predicted == y_test), abs=1e-6)
        assert record[name]["agreement_with_keras"] == pytest.approx(np.mean(predicted == keras_top), abs=1e-6)
    interpreter = load_classifier(artifacts.tflite_float).interpreter
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.float32
    int8 = load_classifier(artifacts.tflite_int8).predict(x_test)
    # int8's own rounding, against the float32 copy it was quantised from: measured 0.03 at most for
    # seed_cnn (as for float32 models, tests/test_export.py), 0.113 for the fast model, whose
    # temperature (0.37) multiplies its scores' quantisation error by 1/T (AMD EPYC Zen 5)
    assert np.abs(int8 - float32_probabilities).max() <= {"seed_cnn": 0.1, "airbench94_muon": 0.25}[model_name]
    assert record["tflite_int8"]["accuracy"] == pytest.approx(np.mean(int8.argmax(axis=1) == y_test), abs=1e-6)


def test_predict_runs_every_format_of_a_bfloat16_model(trained, capsys):
    from stages.predict import main as predict

    path, _, model_name = trained
    artifacts = Artifacts(path)
    image = path / "query.png"
    x_test = np.load(artifacts.prepared_array("x_test"))
    float32_probabilities = float32_copy(load_trained_model(artifacts.model)).predict(x_test, verbose=0)
    # a test image whose top class bfloat16's rounding cannot flip (tests/bfloat16_bounds.py)
    first = int(np.flatnonzero(~bfloat16_bounds.near_ties(float32_probabilities, model_name))[0])
    image.write_bytes(encode_image(x_test[first]))
    classes = json.loads(artifacts.model_classes.read_text())
    expected = classes[int(float32_probabilities[first].argmax())]
    for model in (artifacts.model, artifacts.saved_model, artifacts.tflite_float):
        assert cli.run(predict, ["--model", str(model), "--json", "--top", "1", str(image)]) == 0
        ranked = json.loads(capsys.readouterr().out)["predictions"][str(image)]
        assert ranked[0]["class"] == expected, model


def test_a_float32_model_is_exported_as_it_is():
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
    assert not computes_in_bfloat16(model) and float32_copy(model) is model
