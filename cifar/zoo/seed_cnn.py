"""`train.model: seed_cnn`: the tutorial's CNN and its recipe (Adamax, exponential decay per epoch)."""

import keras

from cifar.models import seed_cnn
from cifar.training import schedules
from cifar.zoo.spec import ModelSpec, warmup_cosine


def learning_rate(recipe, steps_per_epoch):
    """The tutorial's exponential decay per epoch, or a warm-up and cosine decay per step."""
    if recipe["schedule"] == "exponential":
        return recipe["learning_rate"], schedules.exponential(recipe["learning_rate"], recipe["lr_decay"])
    return warmup_cosine(recipe, steps_per_epoch), None


SPEC = ModelSpec(
    name="seed_cnn",
    recipe=seed_cnn.RECIPE,
    build=lambda num_classes, recipe, train_images, seed, replicas: seed_cnn.build(num_classes),
    optimizer=lambda recipe, rate: keras.optimizers.Adamax(rate),
    learning_rate=learning_rate,
    label_smoothing=lambda recipe: 0.0,
)
