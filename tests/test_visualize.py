import json

import keras
import numpy as np
import pytest
import yaml

from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.figures.stimuli import kernels_figure, mosaic, stimuli_figure
from cifar.models.seed_cnn import build as seed_cnn
from cifar.network.layers import normalized_input
from cifar.network.trained import class_score_tensor, load_trained_model
from cifar.visualization import gradient_ascent
from cifar.visualization.gradient_ascent import activation_record as layer_record
from stages.visualize import visualize
from tests import summaries
from tests.datagen import CLASSES


def tiny_conv_model(dead_filters=2, live_filters=3):
    """uint8 input -> normalize -> Conv2D -> LeakyReLU -> Dense(3) -> softmax; some filters made dead."""
    inputs, x = normalized_input()
    conv = keras.layers.Conv2D(live_filters + dead_filters, 3, padding="same", name="conv")
    x = keras.layers.LeakyReLU(0.1, name="act")(conv(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(3)(x)
    outputs = keras.layers.Activation("softmax")(x)
    model = keras.Model(inputs, outputs)
    kernel, bias = conv.get_weights()
    kernel[..., live_filters:] = 0.0  # no input can move these filters...
    bias[live_filters:] = -1.0  # ...and they sit at LeakyReLU(-1) = -0.1: dead
    conv.set_weights([kernel, bias])
    return model


def test_finds_the_four_conv_activations_of_seed_cnn():
    model = seed_cnn()
    assert [layer.name for layer in gradient_ascent.conv_activation_layers(model)] == [
        "leaky_re_lu_1",
        "leaky_re_lu_2",
        "leaky_re_lu_3",
        "leaky_re_lu_4",
    ]
    # The class score is the softmax's input, not the probabilities.
    assert class_score_tensor(model) is model.get_layer("leaky_re_lu_6").output


def test_finds_activation_after_batchnorm_but_not_after_dense():
    inputs, x = normalized_input()
    x = keras.layers.Conv2D(4, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(name="conv_relu")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5)(x)
    x = keras.layers.ReLU(name="dense_relu")(x)
    model = keras.Model(inputs, x)
    assert [layer.name for layer in gradient_ascent.conv_activation_layers(model)] == ["conv_relu"]


def test_a_conv_with_its_own_activation_counts_and_a_linear_one_does_not():
    inputs, x = normalized_input()
    x = keras.layers.Conv2D(4, 3, activation="relu", name="fused")(x)
    x = keras.layers.Conv2D(4, 3, name="linear")(x)
    x = keras.layers.Conv2D(4, 3, activation="elu", name="fused_too")(x)
    model = keras.Model(inputs, x)
    assert [layer.name for layer in gradient_ascent.conv_activation_layers(model)] == ["fused", "fused_too"]


def test_every_stimulus_raises_its_target_above_the_starting_noise():
    keras.utils.set_random_seed(0)
    model = seed_cnn()
    image = gradient_ascent.normalized_image(model)
    layers = gradient_ascent.conv_activation_layers(model)[:2]
    submodels = [keras.Model(image, layer.output) for layer in layers]
    rng = np.random.default_rng(0)
    starts = [
        gradient_ascent.starting_noise(layer.output.shape[-1], rng, gradient_ascent.CONV_NOISE_SCALE)
        for layer in layers
    ]
    for start, (images, initial, final) in zip(starts, gradient_ascent.maximum_stimuli(submodels, starts, 20, 1.0)):
        assert images.shape == start.shape
        assert (final > initial).all()


def test_groups_optimised_together_equal_groups_optimised_alone():
    keras.utils.set_random_seed(0)
    model = seed_cnn()
    image = gradient_ascent.normalized_image(model)
    submodels = [keras.Model(image, layer.output) for layer in gradient_ascent.conv_activation_layers(model)[:2]]
    submodels.append(keras.Model(image, class_score_tensor(model)))
    rng = np.random.default_rng(1)
    starts = [gradient_ascent.starting_noise(n, rng, gradient_ascent.CONV_NOISE_SCALE) for n in (16, 32, 10)]
    together = gradient_ascent.maximum_stimuli(submodels, starts, 5, 1.0, jitter=1, seed=3)
    for submodel, start, joint in zip(submodels, starts, together):
        (alone,) = gradient_ascent.maximum_stimuli([submodel], [start], 5, 1.0, jitter=1, seed=3)
        for a, b in zip(alone, joint):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jitter, blur", [(2, 0.0), (0, 1.0)])
def test_regularisers_keep_the_ascent_working(jitter, blur):
    keras.utils.set_random_seed(0)
    model = seed_cnn()
    layer = gradient_ascent.conv_activation_layers(model)[0]
    submodel = keras.Model(gradient_ascent.normalized_image(model), layer.output)
    start = gradient_ascent.starting_noise(16, np.random.default_rng(0), gradient_ascent.CONV_NOISE_SCALE)
    [(_, initial, final)] = gradient_ascent.maximum_stimuli(
        [submodel], [start], 20, 1.0, jitter=jitter, blur_sigma=blur
    )
    assert np.mean(final > initial) > 0.9


def test_image_values_to_rgb_is_the_tutorials_formula():
    x = np.array([-1.0, 0.0, 1.0, 2.0] * 192).reshape(16, 16, 3)  # known values: mean 0.5, std sqrt(1.25)
    mean, std = -0.027, 0.25
    expected = (x - 0.5) / (np.sqrt(1.25) + 1e-5) * std + mean
    expected = np.clip((expected + 0.5) * 255, 0, 255).astype("uint8")
    np.testing.assert_array_equal(gradient_ascent.image_values_to_rgb(x, mean, std), expected)
    batch = gradient_ascent.image_values_to_rgb(np.stack([x, 3 * x]), mean, std)  # per image, not across the batch
    np.testing.assert_array_equal(batch[0], batch[1])


def test_dead_filters_are_counted_and_shown():
    model = tiny_conv_model(dead_filters=2, live_filters=3)
    layer = gradient_ascent.conv_activation_layers(model)[0]
    submodel = keras.Model(gradient_ascent.normalized_image(model), layer.output)
    start = gradient_ascent.starting_noise(5, np.random.default_rng(0), gradient_ascent.CONV_NOISE_SCALE)
    [(_, _, final)] = gradient_ascent.maximum_stimuli([submodel], [start], 20, 1.0)
    record = layer_record(final)
    assert record["dead"] == 2 and record["filters"] == 5
    assert [final[i] <= 0 for i in range(5)] == [False, False, False, True, True]
    fig = stimuli_figure(np.full((5, 32, 32, 3), 200, np.uint8), final, "t")
    labels = [text.get_text() for text in fig.axes[0].texts]
    assert len(labels) == 5 and [("dead" in label) for label in labels] == [False, False, False, True, True]
    shown = fig.axes[0].images[0].get_array()
    assert shown[0, 0, 0] == 200 and shown[0, 3 * 40, 0] == 128  # dead tiles are greyed out


def test_grids_have_one_tile_per_filter():
    images = np.random.default_rng(0).integers(0, 255, (64, 32, 32, 3), dtype=np.uint8)
    tiles = mosaic(images, cols=8, row_gap=12, col_gap=8)
    assert tiles.shape == (8 * 44, 8 * 40 - 8, 3)
    for i in (0, 9, 63):
        r, c = divmod(i, 8)
        np.testing.assert_array_equal(tiles[r * 44 : r * 44 + 32, c * 40 : c * 40 + 32], images[i])
    assert len(stimuli_figure(images, np.ones(64), "t").axes[0].texts) == 64
    assert len(kernels_figure(np.random.default_rng(0).normal(size=(3, 3, 3, 16))).axes) == 16


def test_model_without_conv_layers_is_refused(tmp_path):
    inputs, x = normalized_input()
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    artifacts = Artifacts(tmp_path)
    artifacts.model.parent.mkdir()
    model.save(artifacts.model)
    artifacts.prepared_dir.mkdir(parents=True)
    artifacts.prepared_stats.write_text('{"mean": 0, "std": 0.25}')
    artifacts.prepared_classes.write_text(json.dumps(list("abcdefghij")))
    params = {"iterations": 2, "step": 1.0, "seed": 0, "jitter": 0, "blur_sigma": 0.0}
    with pytest.raises(PipelineError, match="no convolutional activation layers"):
        visualize(params, artifacts)


def tutorial_starting_noise(layer_filters, classes, seed):
    """The tutorial's starts, (uniform - 0.5) * 0.1 per conv filter and * 0.001 per class, drawn in
    the stage's order (every layer's filters, then the classes) from `seed`."""
    rng = np.random.default_rng(seed)
    starts = [(rng.random((count, 32, 32, 3)) - 0.5) * 0.1 for count in layer_filters]
    return [*starts, (rng.random((classes, 32, 32, 3)) - 0.5) * 0.001]


def own_target(model, output, images):
    """Recomputed with the model itself: for image i, the mean over positions of channel i of
    `output`, a tensor of `model` fed from the normalised image (the stimuli's space)."""
    values = np.asarray(keras.Model(model.get_layer("normalize").output, output)(images, training=False), np.float64)
    if values.ndim == 4:
        values = values.mean(axis=(1, 2))
    return values[np.arange(len(images)), np.arange(len(images))]


def test_the_stage_s_stimuli_raise_their_filters_as_the_model_itself_recomputes(trained_workspace):
    tmp_path = trained_workspace("seed_cnn")  # float32: the test compares two runs
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    settings = {**params["visualize"], "iterations": 5}
    artifacts = Artifacts(tmp_path)
    artifacts.stimuli_dir.mkdir(parents=True, exist_ok=True)
    (artifacts.stimuli_dir / "conv_of_an_earlier_model.png").write_bytes(b"\x89PNG earlier")  # a layer gone since
    messages = []
    record = visualize(settings, artifacts, progress=messages.append)
    first = artifacts.stimuli_record.read_text()
    stimuli_json = json.loads(first)
    assert list(stimuli_json["layers"]) == ["leaky_re_lu_1", "leaky_re_lu_2", "leaky_re_lu_3", "leaky_re_lu_4"]
    assert [v["filters"] for v in stimuli_json["layers"].values()] == [16, 32, 32, 64]
    assert list(stimuli_json["classes"]) == CLASSES
    figures = sorted(path.name for path in artifacts.stimuli_dir.iterdir())
    assert figures == sorted(f"{name}.png" for name in [*stimuli_json["layers"], "classes"])  # and no other
    for name in [*stimuli_json["layers"], "classes"]:
        assert (tmp_path / f"reports/figures/stimuli/{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert artifacts.kernels_figure.is_file()
    assert record["layers"] == stimuli_json["layers"]
    summaries.check_visualize(messages, stimuli_json)
    visualize(settings, artifacts, progress=lambda m: None)
    assert artifacts.stimuli_record.read_text() == first

    # The stimuli the stage drew, and each one's target recomputed by the model itself.
    model = load_trained_model(artifacts.model)
    layers, results = gradient_ascent.model_stimuli(model, len(CLASSES), settings)
    outputs = [model.get_layer(name).output for name in stimuli_json["layers"]] + [model.layers[-1].input]
    reported = [list(v["activations"].values()) for v in stimuli_json["layers"].values()]
    reported.append(list(stimuli_json["classes"].values()))
    starts = tutorial_starting_noise([v["filters"] for v in stimuli_json["layers"].values()], len(CLASSES), 0)
    for output, (images, _, _), start, figures in zip(outputs, results, starts, reported, strict=True):
        final, initial = own_target(model, output, images), own_target(model, output, start.astype(np.float32))
        np.testing.assert_allclose(figures, final, rtol=1e-4, atol=1e-5)
        live = final > 0
        assert live.sum() >= len(final) // 2, output.name
        assert (final[live] > initial[live]).all(), output.name
    for values, name in zip(reported, stimuli_json["layers"]):
        assert stimuli_json["layers"][name]["dead"] == sum(v <= 0 for v in values)
