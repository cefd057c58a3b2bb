"""What each `train.model` name means, in one place.

Each model has a builder, a recipe (the params.yaml section named like the model, with its
rules), an optimizer, a learning-rate schedule and a loss; the test-time augmentation evaluate
applies to it is `tta.<name>` of params.yaml. Stages ask here; nothing else compares model names.
"""

from collections.abc import Callable
from dataclasses import dataclass

import keras

from cifar.core.errors import PipelineError
from cifar.core.params import choice
from cifar.models import fast_net, seed_cnn
from cifar.training import schedules


@dataclass(frozen=True)
class ModelSpec:
    name: str  # also the name of its recipe's section in params.yaml
    recipe: dict  # the rules of that section
    build: Callable  # (num_classes, recipe, train_images, seed, replicas) -> keras.Model
    optimizer: Callable  # (recipe, learning rate or schedule) -> keras optimizer
    learning_rate: Callable  # (recipe, steps per epoch) -> (rate or schedule, rate of each epoch or None)
    label_smoothing: Callable  # recipe -> float


def warmup_cosine(recipe, steps_per_epoch, final_fraction=0.0):
    total = recipe["epochs"] * steps_per_epoch
    warmup = round(recipe["warmup_epochs"] * steps_per_epoch)
    return schedules.warmup_cosine(recipe["learning_rate"], warmup, total, final_fraction)


def seed_cnn_learning_rate(recipe, steps_per_epoch):
    """The tutorial's exponential decay per epoch, or a warm-up and cosine decay per step."""
    if recipe["schedule"] == "exponential":
        return recipe["learning_rate"], schedules.exponential(recipe["learning_rate"], recipe["lr_decay"])
    return warmup_cosine(recipe, steps_per_epoch), None


def fast_learning_rate(recipe, steps_per_epoch):
    """airbench's triangle (linear up from `initial_lr_fraction`, linear down), or warm-up from 0 then cosine."""
    if recipe["schedule"] == "cosine":
        return warmup_cosine(recipe, steps_per_epoch, recipe["final_lr_fraction"]), None
    peak = round(recipe["warmup_epochs"] * steps_per_epoch)
    total = recipe["epochs"] * steps_per_epoch
    triangle = schedules.Triangle(
        recipe["learning_rate"], peak, total, recipe["initial_lr_fraction"], recipe["final_lr_fraction"]
    )
    return triangle, None


def fast_optimizer(recipe, learning_rate):
    """Nesterov SGD with decoupled weight decay, and optionally a moving average of the weights."""
    ema = recipe["ema_momentum"]
    return keras.optimizers.SGD(
        learning_rate,
        momentum=recipe["momentum"],
        nesterov=recipe["nesterov"],
        weight_decay=recipe["weight_decay"] or None,
        use_ema=ema is not None,
        ema_momentum=ema if ema is not None else 0.99,
    )


MODELS = {
    "seed_cnn": ModelSpec(
        name="seed_cnn",
        recipe=seed_cnn.RECIPE,
        build=lambda num_classes, recipe, train_images, seed, replicas: seed_cnn.build(num_classes),
        optimizer=lambda recipe, learning_rate: keras.optimizers.Adamax(learning_rate),
        learning_rate=seed_cnn_learning_rate,
        label_smoothing=lambda recipe: 0.0,
    ),
    "fast": ModelSpec(
        name="fast",
        recipe=fast_net.RECIPE,
        # several replicas: BatchNorm statistics of the global batch, so N devices train what one does
        build=lambda num_classes, recipe, train_images, seed, replicas: fast_net.build(
            num_classes, recipe, train_images, seed, sync_batchnorm=replicas > 1
        ),
        optimizer=fast_optimizer,
        learning_rate=fast_learning_rate,
        label_smoothing=lambda recipe: recipe["label_smoothing"],
    ),
}
MODEL_NAMES = tuple(MODELS)
MODEL_RULE = choice(*MODEL_NAMES)  # train.model


def model_spec(name):
    try:
        return MODELS[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def build_model(name, num_classes, recipe, train_images=None, seed=0, replicas=1):
    """A fresh, uncompiled model `name` for `recipe` (the fast model whitens `train_images`)."""
    return model_spec(name).build(num_classes, recipe, train_images, seed, replicas)
