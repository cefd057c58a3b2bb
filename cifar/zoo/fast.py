"""`train.model: fast`: the BatchNorm CNN after airbench94 and its recipe (Nesterov SGD, airbench's
triangle schedule, label smoothing, its alternating flip, whitening bias frozen, lookahead)."""

import keras

from cifar.models import fast_net
from cifar.training import schedules
from cifar.training.callbacks import FreezeAfter
from cifar.training.lookahead import Lookahead
from cifar.zoo.spec import ModelSpec, warmup_cosine


def learning_rate(recipe, steps_per_epoch):
    """airbench's triangle (linear up from `initial_lr_fraction`, linear down), or warm-up from 0 then cosine."""
    if recipe["schedule"] == "cosine":
        return warmup_cosine(recipe, steps_per_epoch, recipe["final_lr_fraction"]), None
    peak = round(recipe["warmup_epochs"] * steps_per_epoch)
    total = recipe["epochs"] * steps_per_epoch
    triangle = schedules.Triangle(
        recipe["learning_rate"], peak, total, recipe["initial_lr_fraction"], recipe["final_lr_fraction"]
    )
    return triangle, None


def optimizer(recipe, rate):
    """Nesterov SGD with decoupled weight decay, and optionally a moving average of the weights."""
    ema = recipe["ema_momentum"]
    return keras.optimizers.SGD(
        rate,
        momentum=recipe["momentum"],
        nesterov=recipe["nesterov"],
        weight_decay=recipe["weight_decay"] or None,
        use_ema=ema is not None,
        ema_momentum=ema if ema is not None else 0.99,
    )


def callbacks(recipe, steps_per_epoch):
    """The whitening bias frozen after `whiten_bias_epochs` (null: never), and lookahead when `lookahead_every` > 0."""
    found = []
    if recipe["whiten_bias_epochs"] is not None:
        found.append(FreezeAfter("whiten_bias", recipe["whiten_bias_epochs"]))
    if recipe["lookahead_every"]:
        every, start = recipe["lookahead_every"], recipe["lookahead_start_epoch"]
        decay, power = recipe["lookahead_decay"], recipe["lookahead_power"]
        found.append(Lookahead(every, start, decay, power, steps_per_epoch, recipe["epochs"]))
    return found


SPEC = ModelSpec(
    name="fast",
    recipe=fast_net.RECIPE,
    # several replicas: BatchNorm statistics of the global batch, so N devices train what one does
    build=lambda num_classes, recipe, train_images, seed, replicas: fast_net.build(
        num_classes, recipe, train_images, seed, sync_batchnorm=replicas > 1
    ),
    optimizer=optimizer,
    learning_rate=learning_rate,
    label_smoothing=lambda recipe: recipe["label_smoothing"],
    callbacks=callbacks,
    alternating_flip=lambda recipe: recipe["flip"] == "alternating",
    drop_last_batch=lambda recipe: recipe["drop_last_batch"],
)
