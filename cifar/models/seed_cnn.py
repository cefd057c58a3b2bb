"""The tutorial's CNN (`train.model: seed_cnn`) and the rules of its recipe, params.yaml's `seed_cnn` section."""

import keras
from keras import layers

from cifar.core.params import choice, positive_number
from cifar.models.inputs import normalized_input
from cifar.models.recipe import COMMON

RECIPE = {
    **COMMON,
    # exponential: the tutorial's, per epoch; warmup_cosine: linear warm-up, then cosine decay to 0, per step
    "schedule": choice("exponential", "warmup_cosine"),
    "lr_decay": positive_number("a number in (0, 1]", maximum=1),
}


def build(num_classes=10):
    """The tutorial's CNN, layer for layer (1,084,234 trainable parameters for 10 classes)."""
    inputs, x = normalized_input()
    counters = {}

    def add(layer_cls, *args, **kwargs):
        # Names as in the tutorial's summary: conv2d_1, leaky_re_lu_1, ...
        base = {
            "Conv2D": "conv2d",
            "LeakyReLU": "leaky_re_lu",
            "MaxPooling2D": "max_pooling2d",
            "Dropout": "dropout",
            "Flatten": "flatten",
            "Dense": "dense",
            "Activation": "activation",
        }[layer_cls.__name__]
        counters[base] = counters.get(base, 0) + 1
        return layer_cls(*args, name=f"{base}_{counters[base]}", **kwargs)

    x = add(layers.Conv2D, 16, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Conv2D, 32, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.MaxPooling2D, 2)(x)
    x = add(layers.Dropout, 0.25)(x)
    x = add(layers.Conv2D, 32, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Conv2D, 64, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.MaxPooling2D, 2)(x)
    x = add(layers.Dropout, 0.25)(x)
    x = add(layers.Flatten)(x)
    x = add(layers.Dense, 256)(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Dropout, 0.5)(x)
    x = add(layers.Dense, num_classes)(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    outputs = add(layers.Activation, "softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")
