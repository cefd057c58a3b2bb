"""`train.model: airbench94`: Keller Jordan's airbench94 recipe (params.yaml's `airbench94` section): the
shared airbench network (cifar/models/airbench_net.py) trained by one Nesterov SGD with decoupled weight
decay on airbench's triangular rate (up over the first epochs, then down), the BatchNorm biases learning
`bias_lr_scale` times faster, label smoothing, the whitening bias frozen, and airbench's lookahead.
At half airbench's widths, the quicker fast recipe on CPUs without bfloat16 units (docs/fast-model.md).
"""

from dataclasses import dataclass

import keras
import numpy as np

from cifar.core.params import Rule, boolean, choice, fraction, non_negative_int, param, positive_number
from cifar.models import airbench_net
from cifar.models.airbench_net import AirbenchRecipe, batching, loss  # noqa: F401  the loop asks this module
from cifar.training.schedules import WARMUP_EPOCHS, warmup_cosine_in_epochs


@dataclass(frozen=True)
class Recipe(AirbenchRecipe):
    learning_rate: float = param(positive_number())  # the peak rate, on the mean loss
    schedule: str = param(choice("triangle", "cosine"))  # learning_rate
    warmup_epochs: float = param(WARMUP_EPOCHS)  # where the rate peaks
    initial_lr_fraction: float = param(fraction())  # triangle only
    final_lr_fraction: float = param(fraction())
    nesterov: bool = param(boolean())
    weight_decay: float = param(Rule((int, float), "a number >= 0", minimum=0))  # decoupled: x learning rate
    ema_momentum: float = param(
        Rule((int, float), "null (off) or a number from 0 to less than 1", nullable=True, minimum=0, maximum=0.9999)
    )
    bias_lr_scale: float = param(positive_number())  # build: the BatchNorm biases' ScaledBias
    lookahead_every: int = param(non_negative_int("an integer >= 0 (steps; 0 = off)"))
    lookahead_start_epoch: int = param(non_negative_int())
    lookahead_decay: float = param(fraction())
    lookahead_power: float = param(Rule((int, float), "a number >= 0", minimum=0))


def build(recipe, num_classes, train_images=None, seed=0, replicas=1):
    """airbench's network; sqrt(bias_lr_scale) as the BatchNorm biases' scale makes plain SGD's rate
    bias_lr_scale times larger for them (airbench94's bias group)."""
    return airbench_net.network(
        recipe, num_classes, train_images, seed, replicas, bias_scale=recipe.bias_lr_scale**0.5, name="airbench94"
    )


# Training: what the loop (cifar/training/loop.py) asks of every model, besides `build` (and airbench_net's
# `loss` and `batching`).


def check(recipe, replicas):
    """Nothing this model cannot do: it trains on any number of replicas (tests/test_distribute.py)."""


def learning_rate(recipe, steps_per_epoch):
    """airbench's triangle (linear up from `initial_lr_fraction`, linear down), or a warm-up from 0 then cosine."""
    total = recipe.epochs * steps_per_epoch
    if recipe.schedule == "cosine":
        rate, warmup, epochs = recipe.learning_rate, recipe.warmup_epochs, recipe.epochs
        return warmup_cosine_in_epochs(rate, warmup, epochs, steps_per_epoch, recipe.final_lr_fraction)
    peak = round(recipe.warmup_epochs * steps_per_epoch)
    return Triangle(recipe.learning_rate, peak, total, recipe.initial_lr_fraction, recipe.final_lr_fraction)


def optimizer(recipe, steps_per_epoch):
    """Nesterov SGD on the recipe's schedule, with decoupled weight decay, and optionally a moving average
    of the weights."""
    ema = recipe.ema_momentum
    return keras.optimizers.SGD(
        learning_rate(recipe, steps_per_epoch),
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay or None,
        use_ema=ema is not None,
        ema_momentum=ema if ema is not None else 0.99,
    )


def callbacks(recipe, steps_per_epoch):
    """The whitening bias frozen after `whiten_bias_epochs` (null: never), and lookahead when `lookahead_every` > 0."""
    found = airbench_net.whiten_bias_freeze(recipe)
    if recipe.lookahead_every:
        every, start = recipe.lookahead_every, recipe.lookahead_start_epoch
        decay, power = recipe.lookahead_decay, recipe.lookahead_power
        found.append(Lookahead(every, start, decay, power, steps_per_epoch, recipe.epochs))
    return found


@keras.saving.register_keras_serializable(package="cifar")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's schedule: linear from `initial_fraction` of the peak up to it at `peak_step`, then linear
    down to `final_fraction` of it at `total_steps` (its `triangle`, piecewise linear in both halves).
    Registered so that checkpoints, which hold the optimizer, load it back.
    """

    def __init__(self, learning_rate, peak_step, total_steps, initial_fraction, final_fraction):
        self.learning_rate = float(learning_rate)
        self.peak_step = int(peak_step)
        self.total_steps = int(total_steps)
        self.initial_fraction = float(initial_fraction)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak = max(self.peak_step, 1e-9)  # a peak at step 0: no rise
        rising = self.initial_fraction + (1 - self.initial_fraction) * step / peak
        falling_steps = max(self.total_steps - self.peak_step, 1)
        falling = 1 + (self.final_fraction - 1) * (step - self.peak_step) / falling_steps
        fraction = keras.ops.where(step < self.peak_step, rising, keras.ops.maximum(falling, self.final_fraction))
        return self.learning_rate * fraction

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "peak_step": self.peak_step,
            "total_steps": self.total_steps,
            "initial_fraction": self.initial_fraction,
            "final_fraction": self.final_fraction,
        }


LOOKAHEAD_TYPES = ("float16", "bfloat16", "float32", "float64")


class Lookahead(keras.callbacks.Callback):
    """airbench's lookahead: every few steps, pull the weights towards a slow moving average of them.

    From epoch `start_epoch` on, every `every` steps: average <- average + (1 - rho) * (weights -
    average), then weights <- average, with rho = decay ** every * (step / total steps) ** power,
    so the average follows the weights closely at first and holds on to them at the end. The
    BatchNorm statistics are averaged with the weights, as airbench averages its whole state_dict.
    The last step of every epoch copies the average back before validation and the checkpoint.

    At every epoch's end the weights equal the average, so a run resumed from a checkpoint
    restarts the average from its weights and goes on exactly as an uninterrupted run.
    """

    def __init__(self, every, start_epoch, decay, power, steps_per_epoch, epochs):
        super().__init__()
        self.every, self.start_epoch, self.decay, self.power = every, start_epoch, decay, power
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.average = None

    def state_variables(self):
        """Every float variable of the model: weights and BatchNorm statistics, not the seed generators' states."""
        return [v for v in self.model.variables if keras.backend.standardize_dtype(v.dtype) in LOOKAHEAD_TYPES]

    def on_epoch_begin(self, epoch, logs=None):
        # Past the first epoch of averaging the weights equal the average here: start it from them (on resume too).
        self.epoch = epoch
        self.average = self.copy_of_weights() if epoch > self.start_epoch else None

    def copy_of_weights(self):
        return [np.array(v.numpy()) for v in self.state_variables()]  # copies, not views of the variables

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch < self.start_epoch:
            return
        step = self.epoch * self.steps_per_epoch + batch + 1
        if step % self.every == 0:
            if self.average is None:
                self.average = self.copy_of_weights()
            else:
                rho = self.decay**self.every * (step / self.total_steps) ** self.power
                self.pull(rho)
        if batch + 1 == self.steps_per_epoch and self.average is not None:
            self.pull(1.0)

    def pull(self, rho):
        """average <- lerp(average, weights, 1 - rho); weights <- average."""
        updated = []
        for variable, average in zip(self.state_variables(), self.average):
            value = average + (1 - rho) * (variable.numpy() - average)
            variable.assign(value)
            updated.append(value)
        self.average = updated
