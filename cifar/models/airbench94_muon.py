"""`train.model: airbench94_muon`: Keller Jordan's airbench94_muon recipe (cifar10-airbench at commit
096d14d; params.yaml's `airbench94_muon` section), the fast default: the shared airbench network
(cifar/models/airbench_net.py) trained by airbench94_muon's two optimizers as one Keras optimizer
(`AirbenchMuon`), every rate falling linearly to 0, label smoothing, the whitening bias frozen.
The section's defaults are hiverge/cifar10-speedrun's values (commit 5cd49b1), a newer record of the same
recipe; what it changes in the optimizer is three keys, each airbench's by its other value:
`newton_schulz_coefficients`, `renormalise` (the filters rescaled on some steps only) and `decay_filters`
(their decoupled weight decay) (tests/test_speedrun_port.py).

airbench94_muon trains with two PyTorch optimizers stepped together:
- `Muon` for the conv filters (every trainable 4-D tensor): Nesterov momentum on the raw gradient
  (buf = momentum * buf + g; g + momentum * buf), each filter tensor first rescaled to norm
  sqrt(out-channels), then the update orthogonalised by `zeropower_via_newtonschulz5` (3 quintic
  Newton-Schulz steps in bfloat16, on the gradient as an (out-channels x rest) matrix) and
  subtracted at Muon's rate; no weight decay.
- Nesterov SGD (PyTorch's: weight decay added to the gradient before the momentum) for three groups:
  the whitening bias and the BatchNorm biases at `bias_lr`, the head at `head_lr`, each group's
  weight decay `weight_decay / its rate` (so that rate x decay is the same for all).
Every rate falls linearly from its initial value to 0 over the run (no warm-up); the whitening
bias's over its own steps, after which it is frozen (airbench_net.FreezeAfter).
airbench sums the loss over the batch; here the loss stays the batch mean (logs comparable with every
other recipe, and the same under a distribution strategy) and the gradients are multiplied by the
global batch size (`gradient_scale`) before this step: the same update.

Keras's own keras.optimizers.Muon differs (2-D variables only, so conv kernels would go to its AdamW;
5 Newton-Schulz steps by default; decoupled weight decay; a Moonlight rate adjustment; no weight
normalisation), hence this class. Which group a variable is in is read from its layer's name.
"""

import math
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import ops

from cifar.core.params import ListRule, Rule, boolean, choice, param, positive_int, positive_number
from cifar.models import airbench_net
from cifar.models.airbench_net import MOMENTUM, AirbenchRecipe, batching, loss  # noqa: F401  the loop asks this module


@dataclass(frozen=True)
class Recipe(AirbenchRecipe):
    filter_lr: float = param(positive_number())  # Muon's rate for the conv filters
    filter_momentum: float = param(MOMENTUM)  # Muon's Nesterov momentum
    newton_schulz_steps: int = param(positive_int("an integer from 1 to 10", maximum=10))
    # the quintic's (a, b, c): airbench's (3.4445, -4.7750, 2.0315) or the speedrun's (3.4576, -4.7391, 2.0843)
    newton_schulz_coefficients: list = param(ListRule(Rule((int, float), "a number"), 3, "a list of 3 numbers"))
    # each filter tensor rescaled to norm sqrt(out-channels) before its update: every_step (airbench's) or
    # speedrun (hiverge/cifar10-speedrun's: after at least 2 + floor(15 x progress) steps since the last)
    renormalise: str = param(choice("every_step", "speedrun"))
    decay_filters: bool = param(boolean())  # the speedrun's: the filters also shrink by rate x weight decay a step
    bias_lr: float = param(positive_number())  # the whitening and BatchNorm biases' rate
    head_lr: float = param(positive_number())  # the last layer's rate
    weight_decay: float = param(Rule((int, float), "a number >= 0", minimum=0))  # per image of the batch
    head_unit_std: bool = param(boolean())  # build: the last layer's initial weights at standard deviation 1


def build(recipe, num_classes, train_images=None, seed=0, replicas=1):
    """airbench's network, the BatchNorm biases at scale 1 (their rate is the optimizer's `bias_lr`)."""
    return airbench_net.network(
        recipe, num_classes, train_images, seed, replicas, head_unit_std=recipe.head_unit_std, name="airbench94_muon"
    )


# Training: what the loop (cifar/training/loop.py) asks of every model, besides `build` (and airbench_net's
# `loss` and `batching`).


def check(recipe, replicas):
    """Nothing this model cannot do: on any number of replicas it takes one device's step on the global batch
    (Keras sums the replicas' gradients before `update_step`, so Newton-Schulz orthogonalises the global
    batch's update, once on every device; tests/test_distribute.py)."""


def optimizer(recipe, steps_per_epoch):
    """airbench94_muon's Muon for the filters and Nesterov SGD groups for the rest, on the summed loss's
    gradients, every rate falling linearly from its initial value to 0 over the run."""
    total = recipe.epochs * steps_per_epoch
    # the whitening bias's rate falls to 0 over its epochs (null: over the whole run, as the others')
    whiten_bias_epochs = recipe.epochs if recipe.whiten_bias_epochs is None else recipe.whiten_bias_epochs
    return AirbenchMuon(
        keras.optimizers.schedules.PolynomialDecay(1.0, total, end_learning_rate=0.0),  # the fraction of each rate
        filter_lr=recipe.filter_lr,
        filter_momentum=recipe.filter_momentum,
        newton_schulz_steps=recipe.newton_schulz_steps,
        newton_schulz_coefficients=recipe.newton_schulz_coefficients,
        renormalise_steps=None if recipe.renormalise == "every_step" else speedrun_renormalise_steps(total),
        filter_decay=recipe.weight_decay * recipe.batch_size if recipe.decay_filters else 0.0,
        bias_lr=recipe.bias_lr,
        head_lr=recipe.head_lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay * recipe.batch_size,
        gradient_scale=recipe.batch_size,  # airbench sums the loss over the (global) batch
        whiten_bias_steps=math.ceil(whiten_bias_epochs * steps_per_epoch),  # the speedrun's ceil(0.19 x steps)
    )


def speedrun_renormalise_steps(total_steps):
    """The steps (0-based) before which the speedrun's `Muon.step` rescales the filters: its step_count is
    1-based, and it rescales when step_count - last >= 2 + int(15 * step_count / total), last starting at 0."""
    chosen, last = [], 0
    for count in range(1, total_steps + 1):
        if count - last >= 2 + int(15 * count / total_steps):
            chosen.append(count - 1)
            last = count
    return chosen


def callbacks(recipe, steps_per_epoch):
    """The whitening bias frozen after `whiten_bias_epochs` (null: never)."""
    return airbench_net.whiten_bias_freeze(recipe)


# zeropower_via_newtonschulz5's quintic coefficients, chosen to maximise the slope at zero
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def bfloat16(x):
    """A float32 result rounded to bfloat16 (to nearest even), kept as float32."""
    return tf.cast(tf.cast(x, tf.bfloat16), tf.float32)


def newton_schulz(matrix, steps, eps=1e-7, coefficients=NEWTON_SCHULZ):
    """airbench's `zeropower_via_newtonschulz5`: the 2-D `matrix` nearly orthogonalised (US'V^T with S'
    roughly in 0.5-1.5, for USV^T its SVD), in bfloat16 as there: every op's result rounded to bfloat16,
    each matmul summed in float32 as PyTorch's bfloat16 matmul does. Computed in float32 with that
    rounding, so every CPU gets the same numbers, fast, with or without bfloat16 units. Returns float32."""
    with tf.name_scope("newton_schulz"):  # named for the step's profile (benchmarks/profile_step.py)
        return _newton_schulz(matrix, steps, eps, coefficients)


def _newton_schulz(matrix, steps, eps, coefficients):
    a, b, c = coefficients
    x = bfloat16(matrix)
    x = bfloat16(x / bfloat16(bfloat16(tf.norm(x)) + eps))  # top singular value <= 1
    tall = matrix.shape[0] > matrix.shape[1]
    if tall:
        x = tf.transpose(x)
    for _ in range(steps):
        gram = bfloat16(x @ tf.transpose(x))
        # airbench's `b * A + c * A @ A`, which Python reads as b * A + (c * A) @ A
        polynomial = bfloat16(bfloat16(b * gram) + bfloat16(bfloat16(c * gram) @ gram))
        x = bfloat16(bfloat16(a * x) + bfloat16(polynomial @ x))
    return tf.transpose(x) if tall else x


def orthogonalised_update(gradient, steps, coefficients=NEWTON_SCHULZ):
    """A Keras conv kernel's (kh, kw, in, out) update, orthogonalised as airbench's PyTorch (out, in, kh, kw)
    one: as an out-channels x (kh * kw * in) matrix (the order of the columns does not change the result)."""
    shape = gradient.shape
    rows = tf.transpose(tf.reshape(gradient, (-1, shape[-1])))
    orthogonal = newton_schulz(tf.cast(rows, tf.float32), steps, coefficients=coefficients)
    return tf.reshape(tf.transpose(tf.cast(orthogonal, gradient.dtype)), shape)


@keras.saving.register_keras_serializable(package="cifar")
class AirbenchMuon(keras.optimizers.Optimizer):
    """`learning_rate`: the fraction of every group's initial rate (the linear decay from 1 to 0);
    `whiten_bias_steps`: the steps over which the whitening bias's rate falls to 0 instead."""

    def __init__(
        self,
        learning_rate,
        filter_lr,
        filter_momentum,
        newton_schulz_steps,
        bias_lr,
        head_lr,
        momentum,
        weight_decay,
        gradient_scale,
        whiten_bias_steps,
        newton_schulz_coefficients=NEWTON_SCHULZ,
        renormalise_steps=None,
        filter_decay=0.0,
        head_layer=airbench_net.HEAD,
        whiten_bias_layer=airbench_net.WHITEN_BIAS,
        name="airbench_muon",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.filter_lr, self.filter_momentum = float(filter_lr), float(filter_momentum)
        self.newton_schulz_steps = int(newton_schulz_steps)
        self.bias_lr, self.head_lr, self.momentum = float(bias_lr), float(head_lr), float(momentum)
        self.decay = float(weight_decay)  # not Keras's `weight_decay`, which is decoupled
        self.gradient_scale, self.whiten_bias_steps = float(gradient_scale), int(whiten_bias_steps)
        self.head_layer, self.whiten_bias_layer = head_layer, whiten_bias_layer
        self.newton_schulz_coefficients = tuple(float(c) for c in newton_schulz_coefficients)
        # None: every step (airbench's); else the 0-based steps before which the filters are rescaled
        self.renormalise_steps = None if renormalise_steps is None else [int(s) for s in renormalise_steps]
        self.filter_decay = float(filter_decay)

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(variable, "momentum") for variable in variables]
        self.groups = [self.group_of(variable) for variable in variables]

    def group_of(self, variable):
        """airbench's parameter groups: filter_params (every trainable 4-D tensor), the whitening bias,
        the head, and the rest (the BatchNorm biases)."""
        if len(variable.shape) == 4:
            return "filters"
        layer = variable.path.split("/")[0]
        return {self.head_layer: "head", self.whiten_bias_layer: "whiten_bias"}.get(layer, "norm_biases")

    def group_rate(self, group, fraction):
        """(the SGD rate at this step, the initial one) of a group that is not the filters."""
        if group == "head":
            return self.head_lr * fraction, self.head_lr
        if group == "whiten_bias":
            done = ops.cast(self.iterations, "float32") / max(self.whiten_bias_steps, 1)
            return self.bias_lr * ops.maximum(1.0 - done, 0.0), self.bias_lr
        return self.bias_lr * fraction, self.bias_lr

    def update_step(self, gradient, variable, learning_rate):
        fraction = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype) * self.gradient_scale
        index = self._get_variable_index(variable)
        buffer = self.momentums[index]
        if self.groups[index] == "filters":  # Muon.step
            self.assign(buffer, self.filter_momentum * buffer + gradient)
            nesterov = gradient + self.filter_momentum * buffer
            out_channels = variable.shape[-1]
            scale = out_channels**0.5 / ops.sqrt(ops.sum(ops.square(variable)))
            if self.renormalise_steps is not None:  # the speedrun's: only on some steps
                due = ops.any(ops.equal(ops.convert_to_tensor(self.renormalise_steps or [-1], "int64"),
                                        ops.cast(self.iterations, "int64")))  # fmt: skip
                scale = ops.where(due, scale, ops.ones_like(scale))
            self.assign(variable, variable * scale)
            update = orthogonalised_update(nesterov, self.newton_schulz_steps, self.newton_schulz_coefficients)
            rate = self.filter_lr * fraction
            self.assign_sub(variable, rate * update)
            if self.filter_decay:  # the speedrun's decoupled decay, after the update
                self.assign(variable, variable * (1 - rate * self.filter_decay))
            return
        rate, initial = self.group_rate(self.groups[index], fraction)
        # PyTorch's SGD: the decay (weight_decay / the group's initial rate) joins the gradient
        gradient = gradient + (self.decay / initial) * variable
        self.assign(buffer, self.momentum * buffer + gradient)
        self.assign_sub(variable, rate * (gradient + self.momentum * buffer))

    def get_config(self):
        config = super().get_config()
        config.update(
            filter_lr=self.filter_lr,
            filter_momentum=self.filter_momentum,
            newton_schulz_steps=self.newton_schulz_steps,
            bias_lr=self.bias_lr,
            head_lr=self.head_lr,
            momentum=self.momentum,
            weight_decay=self.decay,
            gradient_scale=self.gradient_scale,
            whiten_bias_steps=self.whiten_bias_steps,
            newton_schulz_coefficients=list(self.newton_schulz_coefficients),
            renormalise_steps=self.renormalise_steps,
            filter_decay=self.filter_decay,
            head_layer=self.head_layer,
            whiten_bias_layer=self.whiten_bias_layer,
        )
        return config
