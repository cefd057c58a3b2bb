"""`train.model: seed_cnn`: the tutorial's CNN and its recipe (params.yaml's `seed_cnn` section): its
`Recipe`, the network layer for layer, and its training (Adamax, the tutorial's exponential decay per
epoch, plain cross-entropy, plain shuffled batches, any number of replicas).
"""

from dataclasses import dataclass

import keras
from keras import layers

from cifar.core.params import choice, param, positive_number
from cifar.network.layers import normalized_input
from cifar.training.batches import Batching
from cifar.training.recipe import TrainingRecipe
from cifar.training.schedules import WARMUP_EPOCHS, warmup_cosine_in_epochs


@dataclass(frozen=True)
class Recipe(TrainingRecipe):
    learning_rate: float = param(positive_number())  # Adamax's; the peak rate for warmup_cosine
    # exponential: the tutorial's, per epoch; warmup_cosine: linear warm-up, then cosine decay to 0, per step
    schedule: str = param(choice("exponential", "warmup_cosine"))
    lr_decay: float = param(positive_number("a number in (0, 1]", maximum=1))  # exponential only
    warmup_epochs: float = param(WARMUP_EPOCHS)  # warmup_cosine only


def build(recipe=None, num_classes=10, train_images=None, seed=0, replicas=1):
    """The tutorial's CNN, layer for layer (1,084,234 trainable parameters for 10 classes); it has no
    choices, so it takes the recipe, images, seed and replicas every model's `build` is given and uses none."""
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


# Training: what the loop (cifar/training/loop.py) asks of every model, besides `build`.


def check(recipe, replicas):
    """Nothing this model cannot do: it trains on any number of replicas."""


def optimizer(recipe, steps_per_epoch):
    """The tutorial's Adamax: at its starting rate (the exponential decay sets each epoch's, see
    `callbacks`), or on a warm-up and cosine decay per step."""
    if recipe.schedule == "exponential":
        return keras.optimizers.Adamax(recipe.learning_rate)
    schedule = warmup_cosine_in_epochs(recipe.learning_rate, recipe.warmup_epochs, recipe.epochs, steps_per_epoch)
    return keras.optimizers.Adamax(schedule)


def loss(recipe):
    """The tutorial's categorical cross-entropy."""
    return keras.losses.CategoricalCrossentropy()


def batching(recipe):
    """The tutorial's batches: shuffled, every image, no flips."""
    return Batching()


def exponential(learning_rate, decay):
    """The tutorial's schedule: the rate of epoch e is INIT_LR * decay ** e."""
    return lambda epoch: learning_rate * decay**epoch


def callbacks(recipe, steps_per_epoch):
    """The tutorial's LearningRateScheduler for its exponential decay per epoch; none for the cosine."""
    if recipe.schedule == "exponential":
        return [keras.callbacks.LearningRateScheduler(exponential(recipe.learning_rate, recipe.lr_decay), verbose=1)]
    return []
