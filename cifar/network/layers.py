"""The input every network starts with, and the layers of ours that saved models hold (importing this
module registers them for loading)."""

import keras
from keras import layers

INPUT_SHAPE = (32, 32, 3)


def normalized_input(name="image"):
    """uint8 image input followed by the tutorial's normalisation x/255 - 0.5 (layer 'normalize').

    Every model starts so: the maximum stimuli and Grad-CAM take their gradients at 'normalize'."""
    inputs = keras.Input(INPUT_SHAPE, dtype="uint8", name=name)
    return inputs, layers.Rescaling(1 / 255, offset=-0.5, name="normalize")(inputs)


@keras.saving.register_keras_serializable(package="cifar")
class ScaledBias(layers.Layer):
    """Adds a per-channel bias stored divided by `scale`.

    Gradient steps on the stored value move the bias scale**2 times faster, which is
    airbench's larger learning rate for BatchNorm biases (`bias_lr_scale` = scale**2)
    without a per-variable learning rate, which Keras optimizers lack. Decoupled weight
    decay shrinks it by the same fraction as every other weight, as airbench does.
    `frozen` (set by cifar.training.callbacks.FreezeAfter, not saved) reads the bias through
    stop_gradient, so that it has no gradient and no optimizer update at all.
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.frozen = False

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        bias = keras.ops.stop_gradient(self.bias) if self.frozen else self.bias
        return inputs + self.scale * keras.ops.cast(bias, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="cifar")
class ColourJitter(layers.Layer):
    """hiverge/cifar10-speedrun's `batch_color_jitter` (commit 5cd49b1): while training, each image gets a
    brightness shift b drawn uniformly from -brightness..brightness and a contrast factor c from
    1 - contrast..1 + contrast, the same for all its pixels and channels: (x + b) * c, on the standardised
    image. At inference it is the identity. (Keras's RandomContrast scales around each image's mean.)"""

    def __init__(self, brightness, contrast, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.brightness, self.contrast, self.seed = float(brightness), float(contrast), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        shape = (keras.ops.shape(images)[0], 1, 1, 1)
        draws = keras.random.uniform((2, *shape), seed=self.seed_generator)  # float32 under any policy
        shift = keras.ops.cast((draws[0] * 2 - 1) * self.brightness, images.dtype)
        factor = keras.ops.cast((draws[1] * 2 - 1) * self.contrast + 1, images.dtype)
        return (images + shift) * factor

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "brightness": self.brightness, "contrast": self.contrast, "seed": self.seed}


@keras.saving.register_keras_serializable(package="cifar")
class RandomShift(layers.Layer):
    """airbench94's translation (its `batch_crop`): while training, each image moves by a whole number of
    pixels, drawn uniformly from -reach..reach for each axis independently, its uncovered border filled
    from the image padded with PyTorch's `reflect` (the edge pixel not repeated: numpy's and
    tf.pad's "reflect"). At inference it is the identity. (Keras's RandomTranslation instead draws a
    continuous shift and rounds it, and its "reflect" repeats the edge pixel.)"""

    def __init__(self, reach, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.reach, self.seed = int(reach), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training or not self.reach:
            return images
        import tensorflow as tf

        r = self.reach
        height, width = images.shape[1], images.shape[2]
        padded = tf.pad(images, [[0, 0], [r, r], [r, r], [0, 0]], mode="REFLECT")
        # offsets 0..2r into the padded image: a shift of r - offset pixels
        offsets = keras.random.randint((tf.shape(images)[0], 2), 0, 2 * r + 1, seed=self.seed_generator)
        rows = offsets[:, :1] + tf.range(height)[None]
        columns = offsets[:, 1:] + tf.range(width)[None]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        return tf.gather(cropped, columns, axis=2, batch_dims=1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "reach": self.reach, "seed": self.seed}
