"""Maximum stimuli: the input images that most excite each conv filter or class score.

The tutorial's method (gradient ascent on the input, gradient L2-normalised,
from small random noise, dropout off), run for all filters of a layer at once:
one batch image per filter, every layer in one compiled tf.function.
"""

import keras
import numpy as np
import tensorflow as tf

from cifar.core.errors import PipelineError
from cifar.network.layers import ScaledBias
from cifar.network.trained import class_score_tensor

ACTIVATION_LAYERS = (keras.layers.LeakyReLU, keras.layers.ReLU, keras.layers.ELU, keras.layers.Activation)
# Layers that may stand between a convolution and its activation, keeping one channel per filter.
PASS_THROUGH = (keras.layers.BatchNormalization, keras.layers.MaxPooling2D, ScaledBias)
CONV_NOISE_SCALE = 0.1  # the tutorial's starting noise: (uniform - 0.5) * 0.1 for conv layers
DENSE_NOISE_SCALE = 0.001  # ... and * 0.001 for dense outputs


def producer(layer):
    """The layer whose output feeds `layer` (single-input layers), or None."""
    history = getattr(layer.input, "_keras_history", None)
    return history.operation if history else None


def conv_activation_layers(model):
    """Activation layers fed by a Conv2D (possibly through BatchNormalization), and Conv2D layers with
    a non-linear activation of their own, in model order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D) and layer.activation.__name__ != "linear":
            found.append(layer)
            continue
        if not isinstance(layer, ACTIVATION_LAYERS) or isinstance(layer.input, list):
            continue
        source = producer(layer)
        while isinstance(source, PASS_THROUGH):
            source = producer(source)
        if isinstance(source, keras.layers.Conv2D):
            found.append(layer)
    return found


def normalized_image(model):
    """The tensor holding the normalised image (the output of the model's 'normalize' layer)."""
    try:
        return model.get_layer("normalize").output
    except ValueError:
        raise PipelineError("the model has no 'normalize' layer; cannot take gradients w.r.t. the image") from None


def image_values_to_rgb(x, mean, std):
    """The tutorial's conversion, completed: standardise to the training inputs' mean and std,
    undo x/255 - 0.5, clip to bytes. Works on one image or a batch (per image)."""
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - 3, x.ndim))
    x = (x - x.mean(axis=axes, keepdims=True)) / (x.std(axis=axes, keepdims=True) + 1e-5) * std + mean
    x = (x + 0.5) * 255
    return np.clip(x, 0, 255).astype("uint8")


def _gaussian_kernel(sigma):
    radius = max(1, int(np.ceil(2 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    kernel = np.outer(taps, taps)[:, :, None, None] * np.eye(3)[None, None, :, :]
    return tf.constant(kernel, tf.float32)


def make_objective(submodel):
    """images -> per-image mean activation of channel i for image i (dropout off)."""

    def objective(images):
        output = tf.cast(submodel(images, training=False), tf.float32)
        if output.shape.rank > 2:
            output = tf.reduce_mean(output, axis=list(range(1, output.shape.rank - 1)))
        return tf.gather(output, tf.range(tf.shape(images)[0]), axis=1, batch_dims=1)

    return objective


def make_ascent(objectives, iterations, step, jitter=0, blur_sigma=0.0):
    """One compiled function (image batches, seed) -> (image batches, start activations, final activations).

    Batch g is optimised for objectives[g], all batches in the same loop: one trace
    for every layer, because tracing a layer costs as much as running its 20 steps.
    Each image maximises its own target; its gradient is L2-normalised per image,
    as the tutorial does for its single image. Optional regularisers: random
    jitter (roll by up to `jitter` pixels before each step, rolled back after) and
    a Gaussian blur of the image after each step. The start activations are computed in the
    same graph: evaluated eagerly before it, they cost a Keras call per layer.
    """
    blur = _gaussian_kernel(blur_sigma) if blur_sigma > 0 else None

    def ascent_step(objective, images, shift):
        if jitter:
            images = tf.roll(images, shift, axis=[1, 2])
        with tf.GradientTape() as tape:
            tape.watch(images)
            loss = tf.reduce_sum(objective(images))
        grads = tape.gradient(loss, images)
        norms = tf.sqrt(tf.reduce_sum(tf.square(grads), axis=[1, 2, 3], keepdims=True))
        images = images + step * grads / (norms + 1e-10)
        if jitter:
            images = tf.roll(images, -shift, axis=[1, 2])
        if blur is not None:
            images = tf.nn.conv2d(images, blur, 1, "SAME")
        return images

    @tf.function
    def ascend(batches, seed):
        batches = list(batches)
        initial = [objective(images) for objective, images in zip(objectives, batches)]
        for i in tf.range(iterations):
            shift = tf.zeros([2], tf.int32)  # autograph needs every loop variable defined on all paths
            if jitter:
                shift = tf.random.stateless_uniform(
                    [2], tf.stack([seed, tf.cast(i, tf.int64)]), -jitter, jitter + 1, tf.int32
                )
            batches = [ascent_step(objective, images, shift) for objective, images in zip(objectives, batches)]
        return batches, initial, [objective(images) for objective, images in zip(objectives, batches)]

    return ascend


def starting_noise(count, rng, scale, shape=(32, 32, 3)):
    """The tutorial's start: (uniform - 0.5) * scale."""
    return ((rng.random((count, *shape)) - 0.5) * scale).astype("float32")


def maximum_stimuli(submodels, starts, iterations, step, jitter=0, blur_sigma=0.0, seed=0):
    """Optimise starts[g][i] for output channel i of submodels[g], all groups in one compiled loop.

    Returns one (images, start activations, final activations) triple per group, as NumPy arrays.
    """
    objectives = [make_objective(submodel) for submodel in submodels]
    starts = [tf.constant(start) for start in starts]
    ascend = make_ascent(objectives, iterations, step, jitter, blur_sigma)
    images, initial, final = ascend(starts, tf.constant(seed, tf.int64))
    return [(i.numpy(), s.numpy(), f.numpy()) for i, s, f in zip(images, initial, final)]


def model_stimuli(model, num_classes, settings, model_file="the model"):
    """Stimuli of every conv activation layer's filters, then of the class scores, in one compiled loop.

    Returns the layers and one (images, start activations, final activations) triple per layer and
    one for the classes last; the starting noise is drawn in that order from `settings["seed"]`.
    """
    layers = conv_activation_layers(model)
    if not layers:
        raise PipelineError(f"{model_file}: the model has no convolutional activation layers to visualise")
    image = normalized_image(model)
    rng = np.random.default_rng(settings["seed"])
    submodels = [keras.Model(image, layer.output) for layer in layers]
    submodels.append(keras.Model(image, class_score_tensor(model)))
    starts = [starting_noise(layer.output.shape[-1], rng, CONV_NOISE_SCALE) for layer in layers]
    starts.append(starting_noise(num_classes, rng, DENSE_NOISE_SCALE))
    options = {key: settings[key] for key in ("iterations", "step", "jitter", "blur_sigma", "seed")}
    return layers, maximum_stimuli(submodels, starts, **options)


def activation_record(final):
    """A layer's final activations for reports/stimuli.json: count, dead filters, mean, each one."""
    return {
        "filters": int(len(final)),
        "dead": int(np.sum(final <= 0)),
        "mean_activation": round(float(np.mean(final)), 6),
        "activations": {str(i): round(float(v), 6) for i, v in enumerate(final)},
    }
