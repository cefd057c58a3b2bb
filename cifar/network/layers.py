"""The input every network starts with, and the layers of ours that saved models hold (importing this
module registers them for loading)."""

import math

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
    Frozen during training by cifar.models.airbench_net.FreezeAfter (`trainable` False), it is
    saved trainable all the same: a checkpoint's optimizer then holds its slots, and the callback
    freezes it again from the epoch alone when the run resumes.
    """

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + self.scale * keras.ops.cast(self.bias, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "trainable": True}


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


@keras.saving.register_keras_serializable(package="cifar")
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras's BatchNormalization computed by TensorFlow's fused kernel (FusedBatchNormV3, oneDNN's on a
    CPU) where it can be: Keras 3 instead casts bfloat16 inputs to float32 and runs the moments and the
    normalisation as separate element-wise ops, which took 3.7x as long in the fast default's training
    step (docs/speed.md). Same variables and parameters, and the same moving statistics as Keras's (its
    biased batch variance, not the kernel's unbiased one), so that one device and several (which fall
    back to Keras's synchronized code) train alike. Falls back to Keras's own code also for masks,
    renorm, inputs not 4-D channels-last, and an epsilon under cuDNN's floor of 1e-5 where a GPU is
    visible (cuDNN would raise it)."""

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        update = bool(training) and self.trainable
        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones((channels,), "float32")
        offset = self.beta if self.center else tf.zeros((channels,), "float32")
        outputs, mean, unbiased_variance, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.cast(scale, "float32"),
            offset=tf.cast(offset, "float32"),
            mean=tf.cast(self.moving_mean, "float32"),
            variance=tf.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=update,
        )
        if update:  # Keras's update, from the batch's biased variance
            count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), "float32")
            variance = unbiased_variance * (count - 1) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return keras.ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        if keras.backend.backend() != "tensorflow" or self.synchronized or self.renorm or mask is not None:
            return False
        if len(inputs.shape) != 4 or self.axis not in (-1, 3):
            return False
        if keras.backend.standardize_dtype(inputs.dtype) not in ("float32", "bfloat16", "float16"):
            return False
        import tensorflow as tf

        return self.epsilon >= 1.001e-5 or not tf.config.list_logical_devices("GPU")


@keras.saving.register_keras_serializable(package="cifar")
def gelu(x):
    """The exact GELU, x * Phi(x) (Keras's "gelu", PyTorch's nn.GELU()), made cheaper where the fast
    default spends its time (docs/speed.md), with the same values:

    - its derivative written out, Phi(x) + x * phi(x): TensorFlow's own gradient, op by op back through
      erfc, took twice as long on the whitening layer's large output;
    - on bfloat16 (and float16) inputs, Phi from erf in float32, rounded once at the end: Keras's erfc
      form computed in bfloat16 took three times as long, and rounds after each of its ops.
    On float32 inputs it is TensorFlow's own op sequence, which the TFLite converter fuses into its GELU
    (the export stage converts a float32 model; erf alone TFLite lacks)."""
    import tensorflow as tf

    @tf.custom_gradient
    def forward(x):
        def gradient(upstream):
            cdf = 0.5 * (1.0 + tf.math.erf(x * (1 / math.sqrt(2))))
            return upstream * (cdf + x * tf.exp(-0.5 * tf.square(x)) * (1 / math.sqrt(2 * math.pi)))

        if x.dtype == tf.float32 or x.dtype == tf.float64:
            return tf.nn.gelu(x, approximate=False), gradient
        wide = tf.cast(x, tf.float32)
        return tf.cast(wide * (0.5 * (1.0 + tf.math.erf(wide * (1 / math.sqrt(2))))), x.dtype), gradient

    return forward(x)


@keras.saving.register_keras_serializable(package="cifar")
def silu(x):
    """SiLU, x * sigmoid(x) (Keras's "silu", PyTorch's nn.SiLU()): on bfloat16 (and float16) inputs
    computed in float32 and rounded once, its derivative sigmoid(x) * (1 + x * (1 - sigmoid(x))) too,
    which took two thirds of the time of TensorFlow's bfloat16 ops in the fast default's training step
    (docs/speed.md). On float32 inputs TensorFlow's own, as `gelu` above."""
    import tensorflow as tf

    if x.dtype == tf.float32 or x.dtype == tf.float64:
        return tf.nn.silu(x)

    @tf.custom_gradient
    def forward(x):
        def gradient(upstream):
            wide = tf.cast(x, tf.float32)
            sigmoid = tf.sigmoid(wide)
            return tf.cast(tf.cast(upstream, tf.float32) * (sigmoid * (1.0 + wide * (1.0 - sigmoid))), x.dtype)

        wide = tf.cast(x, tf.float32)
        return tf.cast(wide * tf.sigmoid(wide), x.dtype), gradient

    return forward(x)
