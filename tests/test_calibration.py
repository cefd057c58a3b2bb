"""Temperature scaling (Guo et al., 2017): fitted on held-out training images, held by the saved model,
applied by evaluate, predict and the exports."""

import json

import keras
import numpy as np
import pytest
from scipy.special import log_softmax, softmax

from cifar.calibration.temperature import (
    fit_temperature,
    holdout_split,
    temperature_of,
    with_temperature,
    without_temperature,
)
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.models.scores import class_score_tensor, final_softmax
from tests.conftest import set_params
from tests.helpers import prepare_workspace, train_in_workspace


def nll(scores, labels, temperature):
    return -np.mean(log_softmax(scores / temperature, axis=1)[np.arange(len(labels)), labels])


@pytest.mark.parametrize("sharpness", [0.2, 1.0, 6.0])  # under-confident, about right, over-confident
def test_the_temperature_minimises_the_held_out_nll(sharpness):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    # scores that are right 70% of the time, scaled to be too soft or too sharp
    noisy = rng.normal(size=(2000, 10)) + 2.5 * np.eye(10)[labels]
    scores = sharpness * noisy
    found = fit_temperature(scores, labels)
    grid = np.exp(np.linspace(np.log(0.01), np.log(100), 20001))  # Guo et al.'s objective, by brute force
    best = grid[np.argmin([nll(scores, labels, t) for t in grid])]
    assert found == pytest.approx(best, rel=1e-3)
    assert nll(scores, labels, found) <= nll(scores, labels, 1.0)
    # the scores of a well-calibrated model are sharpness * noisy with T = sharpness
    assert found == pytest.approx(sharpness * fit_temperature(noisy, labels), rel=1e-3)


def test_the_held_out_slice_is_seeded_disjoint_and_off_at_zero():
    kept, held = holdout_split(100, 20, seed=3)
    assert len(held) == 20 and len(kept) == 80 and not set(kept) & set(held)
    assert sorted([*kept, *held]) == list(range(100))
    np.testing.assert_array_equal(held, holdout_split(100, 20, seed=3)[1])
    assert not np.array_equal(held, holdout_split(100, 20, seed=4)[1])
    kept, held = holdout_split(100, 0, seed=3)
    assert len(held) == 0 and list(kept) == list(range(100))
    with pytest.raises(PipelineError, match="calibration_images is 100, not fewer than the 100 training images"):
        holdout_split(100, 100, seed=0)


def test_a_model_with_a_temperature_divides_its_scores_and_keeps_its_top_class(tmp_path):
    inputs = keras.Input((5,))
    scores = keras.layers.Dense(4, kernel_initializer=keras.initializers.RandomNormal(stddev=2.0, seed=0))(inputs)
    model = keras.Model(inputs, keras.layers.Activation("softmax", name="softmax")(scores))
    x = np.random.default_rng(1).normal(size=(50, 5)).astype(np.float32)
    logits = keras.Model(inputs, scores).predict(x, verbose=0).astype(np.float64)
    scaled = with_temperature(model, 2.5)
    assert temperature_of(scaled) == pytest.approx(2.5) and temperature_of(model) == 1.0
    probabilities = scaled.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities, softmax(logits / 2.5, axis=1), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(probabilities.argmax(axis=1), model.predict(x, verbose=0).argmax(axis=1))
    np.testing.assert_allclose(without_temperature(probabilities, 2.5), softmax(logits, axis=1), atol=1e-5)
    scaled.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras", compile=False)
    assert temperature_of(loaded) == pytest.approx(2.5)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), probabilities, atol=1e-6)


@pytest.mark.parametrize("head", ["softmax_layer", "softmax_activation", "softmax_inside_dense"])
def test_scores_are_the_final_softmax_s_input_and_only_a_separate_softmax_takes_a_temperature(head):
    inputs = keras.Input((5,))
    if head == "softmax_inside_dense":  # no separate softmax: the output is all there is
        model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(inputs))
        assert final_softmax(model) is None and class_score_tensor(model) is model.output
        with pytest.raises(PipelineError, match="softmax alone"):
            with_temperature(model, 2.0)
        return
    scores = keras.layers.Dense(4)(inputs)
    softmax = keras.layers.Softmax() if head == "softmax_layer" else keras.layers.Activation("softmax")
    model = keras.Model(inputs, softmax(scores))
    assert final_softmax(model) is model.layers[-1] and class_score_tensor(model) is scores


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_the_train_stage_fits_the_temperature_on_held_out_images_and_every_use_applies_it(tmp_path, precision, capsys):
    from cifar.core import cli
    from stages.evaluate import evaluate
    from stages.export import export
    from stages.predict import main as predict

    params = prepare_workspace(tmp_path, precision=precision, train_images=100, test_images=30, model="fast")
    params = set_params(
        tmp_path,
        fast={"epochs": 2, "batch_size": 10, "widths": [8, 8, 8], "warmup_epochs": 0.5, "calibration_images": 20},
    )
    artifacts = Artifacts(tmp_path)
    steps = []

    class CountSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            steps.append(batch)

    model, _ = train_in_workspace(tmp_path, callbacks=[CountSteps()])
    assert len(steps) == 2 * 80 // 10  # 80 images trained on: the 20 held out are not

    saved = keras.models.load_model(artifacts.model, compile=False)
    temperature = temperature_of(saved)
    assert temperature != 1.0
    # The same fit, recomputed: the held-out images (the seeded slice), their scores before the temperature
    x_train, y_train = np.load(artifacts.x_train), np.load(artifacts.y_train)
    _, held = holdout_split(len(y_train), 20, params["train"]["seed"])
    scores = keras.Model(saved.inputs, saved.get_layer("temperature").input)
    held_scores = scores.predict(x_train[held], verbose=0).astype(np.float64)
    assert temperature == pytest.approx(fit_temperature(held_scores, y_train[held]), rel=1e-4)

    # evaluate: calibration with and without it, the latter recomputed from the scores alone (no TTA here)
    metrics = evaluate(params["evaluate"], 0, artifacts)
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    test_scores = scores.predict(x_test, verbose=0).astype(np.float64)
    assert metrics["temperature"] == pytest.approx(temperature, abs=1e-6)
    unscaled_nll = -np.mean(log_softmax(test_scores, axis=1)[np.arange(len(y_test)), y_test])
    scaled_nll = -np.mean(log_softmax(test_scores / temperature, axis=1)[np.arange(len(y_test)), y_test])
    tolerance = 1e-4 if precision == "float32" else 2e-2
    assert metrics["nll_without_temperature"] == pytest.approx(unscaled_nll, abs=tolerance)
    assert metrics["nll"] == pytest.approx(scaled_nll, abs=tolerance)

    # The exports hold it: TFLite equals the float32 copy it is converted from (for a model trained in
    # bfloat16; the model itself otherwise), and that copy's probabilities are its scores / T
    export({"representative_images": 10, "latency_runs": 1}, artifacts, progress=lambda m: None)
    from cifar.export.classifiers import load_classifier
    from cifar.models.saved import float32_copy

    exported = float32_copy(saved)
    exported_scores = keras.Model(exported.inputs, exported.get_layer("temperature").input)
    calibrated = softmax(exported_scores.predict(x_test, verbose=0).astype(np.float64) / temperature, axis=1)
    np.testing.assert_allclose(exported.predict(x_test, verbose=0), calibrated, atol=1e-5)
    np.testing.assert_allclose(load_classifier(artifacts.tflite_float).predict(x_test), calibrated, atol=1e-5)
    # predict gives the saved model's calibrated probabilities
    from PIL import Image

    image = tmp_path / "query.png"
    Image.fromarray(x_test[0]).save(image)
    capsys.readouterr()  # what the stages printed
    assert cli.run(predict, ["--model", str(artifacts.model), "--json", "--top", "10", str(image)]) == 0
    ranked = json.loads(capsys.readouterr().out)["predictions"][str(image)]
    by_class = {entry["class"]: entry["probability"] for entry in ranked}
    expected = softmax(test_scores[0] / temperature)
    np.testing.assert_allclose([by_class[c] for c in artifacts.load_classes()], expected, atol=1e-4)
