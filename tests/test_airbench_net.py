"""The network airbench94 and airbench94_muon share (cifar/models/airbench_net.py): structure, whitening,
augmentation, each model's recipe training a step, and test-time augmentation."""

import json
import warnings

import keras
import numpy as np
import pytest

from benchmarks.recipes import TINY
from cifar import models
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.models.airbench_net import augmentation, whitening_kernel
from cifar.network.layers import FusedBatchNormalization, ScaledBias, gelu, silu
from cifar.network.trained import load_trained_model
from tests.datagen import CLASSES
from tests.helpers import assert_test_metrics_are_the_models, prepare_workspace, tiny_recipe, train_in_workspace

AIRBENCH = ("airbench94", "airbench94_muon")  # the models built on the shared network


def images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", AIRBENCH)
def test_the_network_has_the_recipes_widths_and_a_frozen_whitening_layer(name):
    model = models.model(name).build(tiny_recipe(name, widths=[8, 16, 24]), 10, images(20))
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [conv.filters for conv in convs] == [24, 8, 8, 16, 16, 24, 24]
    assert not convs[0].trainable and convs[0].kernel.shape == (2, 2, 3, 24)
    assert all(conv.trainable for conv in convs[1:])
    assert model.output.shape == (None, 10)
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 6


def test_whitening_kernel_decorrelates_patches():
    rng = np.random.default_rng(0)
    # Correlated channels and neighbouring pixels: smooth, colour-mixed noise.
    base = rng.normal(size=(200, 33, 33, 1))
    smooth = base[:, 1:, 1:] + base[:, :-1, :-1]
    sample = np.concatenate(
        [smooth, 0.5 * smooth + 0.1 * rng.normal(size=smooth.shape), rng.normal(size=smooth.shape)], -1
    )
    kernel = whitening_kernel(sample, eps=0.0)
    windows = np.lib.stride_tricks.sliding_window_view(sample, (2, 2), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12)
    whitened = patches @ kernel.reshape(12, 24)[:, :12]
    np.testing.assert_allclose(whitened.T @ whitened / len(whitened), np.eye(12), atol=1e-6)
    np.testing.assert_array_equal(kernel[..., 12:], -kernel[..., :12])


def test_augmentation_flips_and_shifts_in_training_only():
    batch = images(16, seed=1)
    layers = augmentation(tiny_recipe("airbench94_muon", flip="random", translate=2), seed=3)
    x = keras.ops.convert_to_tensor(batch.astype("float32"))
    out = x
    for layer in layers:
        out = layer(out, training=True)
    out = np.asarray(out)
    assert out.shape == batch.shape
    changed = 0
    for original, augmented in zip(batch.astype("float32"), out):
        matches = [
            (flip, dy, dx)
            for flip in (False, True)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if np.array_equal(interior(shift(original[:, ::-1] if flip else original, dy, dx)), interior(augmented))
        ]
        assert matches, "every augmented image is a mirrored and/or shifted copy of its original"
        changed += (False, 0, 0) not in matches
    assert changed > 0
    for layer in layers:
        x = layer(x, training=False)
    np.testing.assert_array_equal(np.asarray(x), batch)


def shift(image, dy, dx):
    return np.roll(image, (dy, dx), axis=(0, 1))


def interior(image, border=2):
    return image[border:-border, border:-border]


def test_scaled_bias_learns_scale_squared_times_faster():
    layer = ScaledBias(scale=8.0)
    layer.build((None, 3))
    x = keras.ops.zeros((1, 3))
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = keras.ops.sum(layer(x))
    (grad,) = tape.gradient(loss, [layer.bias])
    keras.optimizers.SGD(0.01).apply_gradients([(grad, layer.bias)])
    np.testing.assert_allclose(np.asarray(layer(x)), np.full((1, 3), -0.01 * 64), rtol=1e-6)


def batchnorm_pair(dtype, **options):
    """Keras's BatchNormalization and ours, with the same random scale and offset where they have them."""
    pair = [keras.layers.BatchNormalization(dtype=dtype, **options), FusedBatchNormalization(dtype=dtype, **options)]
    rng = np.random.default_rng(1)
    for layer in pair:
        layer.build((None, 5, 5, 8))
    weights = [rng.normal(1, 0.3, w.shape).astype("float32") for w in pair[0].get_weights()]
    for layer in pair:
        layer.set_weights(weights)
    return pair


@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("options", [dict(center=False, scale=False, epsilon=1e-12), dict(momentum=0.6)])
def test_fused_batchnorm_computes_what_keras_batchnorm_does(dtype, options):
    import tensorflow as tf

    x = tf.constant(np.random.default_rng(0).normal(2, 3, (32, 5, 5, 8)).astype("float32"))
    # bfloat16 keeps 8 significant bits: both round the same float32 result to it, or differ by one step
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == "float32" else dict(rtol=2**-7, atol=2**-7)
    results = []
    for layer in batchnorm_pair(dtype, **options):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = [layer(x, training=True) for _ in range(3)]
            loss = tf.reduce_sum(tf.cast(outputs[-1], "float32") * tf.range(8, dtype="float32"))
        gradient = tape.gradient(loss, x)
        results.append((outputs[-1], gradient, layer.moving_mean, layer.moving_variance, layer(x, training=False)))
    keras_results, fused_results = results
    for expected, actual in zip(keras_results, fused_results, strict=True):
        np.testing.assert_allclose(np.float32(actual), np.float32(expected), **tolerance)
    assert fused_results[0].dtype == keras_results[0].dtype


def op_types(layer, shape):
    import tensorflow as tf

    graph = tf.function(lambda x: layer(x, training=True)).get_concrete_function(tf.TensorSpec(shape)).graph
    return {op.type for op in graph.get_operations()}


def test_fused_batchnorm_runs_the_fused_kernel_and_keras_code_where_the_kernel_cannot():
    assert "FusedBatchNormV3" in op_types(FusedBatchNormalization(), (None, 5, 5, 8))
    assert "FusedBatchNormV3" in op_types(FusedBatchNormalization(dtype="mixed_bfloat16"), (None, 5, 5, 8))
    assert "FusedBatchNormV3" not in op_types(FusedBatchNormalization(), (None, 8))  # not an image batch
    assert "FusedBatchNormV3" not in op_types(FusedBatchNormalization(synchronized=True), (None, 5, 5, 8))


def exact_activations(x):
    """{name: (our function, its values at x, its derivative at x, Keras's function)}, in float64."""
    import math

    cdf = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    pdf = np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi)
    sigmoid = 1 / (1 + np.exp(-x))
    return {
        "gelu": (gelu, x * cdf, cdf + x * pdf, lambda v: keras.activations.gelu(v, approximate=False)),
        "silu": (silu, x * sigmoid, sigmoid * (1 + x * (1 - sigmoid)), keras.activations.silu),
    }


@pytest.mark.parametrize("name", ["gelu", "silu"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_our_gelu_and_silu_and_their_gradients_are_the_exact_functions(name, dtype):
    import tensorflow as tf

    x = tf.cast(tf.constant(np.linspace(-8, 8, 321)), dtype)
    function, values, derivative, keras_function = exact_activations(np.float64(tf.cast(x, "float64")))[name]
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = function(x)
    gradient = tape.gradient(y, x)
    assert y.dtype == x.dtype and gradient.dtype == x.dtype
    # float32: its own rounding; bfloat16 (8 significant bits): one rounding of the output, a few in the
    # gradient, which our bfloat16 path computes in float32 and Keras's in bfloat16 op by op
    tolerance = dict(rtol=1e-6, atol=1e-6) if dtype == "float32" else dict(rtol=2**-7, atol=2**-7)
    np.testing.assert_allclose(np.float64(y), values, **tolerance)
    np.testing.assert_allclose(np.float64(gradient), derivative, **tolerance)
    np.testing.assert_allclose(np.float64(y), np.float64(keras_function(x)), **tolerance)


def test_the_muon_defaults_train_and_their_model_loads_back_and_is_evaluated_and_visualised(tmp_path):
    from stages.evaluate import evaluate
    from stages.visualize import visualize

    params = prepare_workspace(
        tmp_path, precision="auto", train_images=64, test_images=20, model="airbench94_muon", label_smoothing=0.2
    )
    artifacts = Artifacts(tmp_path)

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        model, history = train_in_workspace(tmp_path)
    # the whitening bias frozen after its epochs is expected: no "Gradients do not exist" from Keras, nor any other
    assert [str(w.message) for w in warned if issubclass(w.category, UserWarning)] == []
    assert len(history["loss"]) == TINY["airbench94_muon"]["epochs"] and np.all(np.isfinite(history["loss"]))
    assert type(model.optimizer).__name__ == "AirbenchMuon"  # airbench94_muon's optimizers
    assert model.loss.label_smoothing == 0.2
    loaded = load_trained_model(Artifacts(tmp_path).model)
    batch = images(4)
    np.testing.assert_allclose(loaded.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=1e-6)
    assert json.loads(Artifacts(tmp_path).model_classes.read_text()) == CLASSES

    metrics = evaluate(params["evaluate"], params["tta"]["airbench94_muon"], artifacts)
    # `auto`: bfloat16 on CPUs with bfloat16 units, then bounded by the float32 copy's numbers
    assert_test_metrics_are_the_models(tmp_path, metrics)
    assert list(metrics["per_class"]) == CLASSES
    record = visualize({**params["visualize"], "iterations": 2}, artifacts, progress=lambda message: None)
    conv_layers = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(record["layers"]) == len(conv_layers) == 7  # the whitening conv and the six of the groups
    assert [r["filters"] for r in record["layers"].values()] == [conv.filters for conv in conv_layers]
    # the last group's activation, named after the recipe's (the default's SiLU)
    assert (artifacts.stimuli_dir / f"block3b_{params['airbench94_muon']['activation']}.png").is_file()


@pytest.mark.parametrize("name", ["seed_cnn", *AIRBENCH])
def test_the_model_name_selects_its_module_and_builder(name):
    module = models.model(name)
    assert module.__name__ == f"cifar.models.{name}"
    assert module.build(tiny_recipe(name), 10).name == name


def test_an_unknown_or_renamed_model_is_refused():
    with pytest.raises(PipelineError, match=r"unknown model 'fast'; known: seed_cnn, airbench94, airbench94_muon"):
        models.model("fast")


def test_weight_average_survives_a_kill_after_the_last_checkpoint(tmp_path):
    """The last checkpoint holds the raw weights; a resumed run must still end on their moving average."""
    # airbench94's SGD keeps the average (ema_momentum); airbench94_muon has none
    prepare_workspace(
        tmp_path, precision="float32", train_images=64, test_images=20, model="airbench94", ema_momentum=0.5
    )

    class Crash(Exception):
        pass

    class CrashAtTheEnd(keras.callbacks.Callback):
        """Keeps the weights fit ends on (the moving average), then dies before the model is written."""

        def on_train_end(self, logs=None):
            self.final = self.model.get_weights()
            raise Crash

    crash = CrashAtTheEnd()
    with pytest.raises(Crash):
        train_in_workspace(tmp_path, callbacks=[crash])
    resumed, _ = train_in_workspace(tmp_path)
    assert type(resumed.optimizer).__name__ == "SGD" and resumed.optimizer.use_ema and resumed.optimizer.nesterov
    for ours, theirs in zip(resumed.get_weights(), crash.final, strict=True):
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
