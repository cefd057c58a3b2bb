"""Layers of ours that saved models hold; importing this module registers them for loading."""

import keras
from keras import layers


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
