"""What a model of the zoo is: everything that differs between models, in one object."""

from collections.abc import Callable
from dataclasses import dataclass

from cifar.training import schedules


def no_callbacks(recipe, steps_per_epoch):
    return []


def no_alternating_flip(recipe):
    return False


def keep_last_batch(recipe):
    return False


@dataclass(frozen=True)
class ModelSpec:
    name: str  # `train.model`'s value, and the name of its recipe's section in params.yaml
    recipe: dict  # the rules of that section (cifar.core.params)
    build: Callable  # (num_classes, recipe, train_images, seed, replicas) -> keras.Model
    optimizer: Callable  # (recipe, learning rate or schedule) -> keras optimizer
    learning_rate: Callable  # (recipe, steps per epoch) -> (rate or schedule, rate of each epoch or None)
    label_smoothing: Callable  # recipe -> float
    # (recipe, steps per epoch) -> the Keras callbacks this model's training adds (run before the checkpoint)
    callbacks: Callable = no_callbacks
    # recipe -> whether the training batches mirror a different half of the images each epoch (airbench's flip)
    alternating_flip: Callable = no_alternating_flip
    # recipe -> whether each epoch leaves out its last, partial batch (airbench's loader does)
    drop_last_batch: Callable = keep_last_batch


def warmup_cosine(recipe, steps_per_epoch, final_fraction=0.0):
    """A recipe's linear warm-up over `warmup_epochs`, then cosine decay over the rest of its epochs, per step."""
    total = recipe["epochs"] * steps_per_epoch
    warmup = round(recipe["warmup_epochs"] * steps_per_epoch)
    return schedules.warmup_cosine(recipe["learning_rate"], warmup, total, final_fraction)
