"""`train.model: fast`: a small BatchNorm CNN, a port of Keller Jordan's airbench94, and its recipe
(params.yaml's `fast` section): its rules first, then the network, then its training (Nesterov SGD,
airbench's triangle schedule, label smoothing, the whitening bias frozen, lookahead).

The images standardised per channel (airbench's normalisation), a frozen 2x2 patch-whitening
convolution computed from the training images, then three conv groups (conv, max-pool,
BatchNorm, GELU, conv, BatchNorm, GELU), global max-pooling and a scaled linear layer.
Training-time augmentation (random horizontal flip, airbench's whole-pixel translation with
reflected borders) is part of the model, so it runs inside the compiled training step and is
identity at inference; airbench's alternating flip, which needs to know each image, is done by
the training batches (cifar/training/loop.py `batching` reads `flip` and `drop_last_batch`, and
`compile_model` reads `label_smoothing`). Every choice is a key of the `fast` section of params.yaml; the remaining
differences from airbench94 are listed in docs/fast-model.md.
"""

import keras
import numpy as np
from keras import layers

from cifar.core.params import ListRule, Rule, boolean, choice, fraction, non_negative_int, positive_int, positive_number
from cifar.network.layers import RandomShift, ScaledBias, normalized_input
from cifar.training import schedules
from cifar.training.callbacks import FreezeAfter
from cifar.training.lookahead import Lookahead
from cifar.training.loop import RECIPE_RULES
from cifar.training.muon import AirbenchMuon

MOMENTUM = Rule((int, float), "a number from 0 to less than 1", minimum=0, maximum=0.999)

RECIPE = {
    **RECIPE_RULES,
    "final_lr_fraction": fraction(),
    "momentum": MOMENTUM,
    "nesterov": boolean(),
    "weight_decay": Rule((int, float), "a number >= 0", minimum=0),
    "label_smoothing": fraction("a number from 0 to 1 (0 = off)"),
    "ema_momentum": Rule(
        (int, float), "null (off) or a number from 0 to less than 1", nullable=True, minimum=0, maximum=0.9999
    ),
    "widths": ListRule(
        positive_int("an integer from 1 to 4096", maximum=4096), 3, "a list of 3 integers from 1 to 4096"
    ),
    "batchnorm_momentum": fraction("a number from 0 to 1 (the running statistics' weight on themselves)"),
    "bias_lr_scale": positive_number(),
    "output_scale": positive_number(),
    "flip": choice("alternating", "random", "none"),
    "translate": Rule((int,), "an integer from 0 to 8 (pixels; 0 = off)", minimum=0, maximum=8),
    "drop_last_batch": boolean(),
    "init": choice("airbench", "keras"),
    "schedule": choice("triangle", "cosine", "linear"),
    "optimizer": choice("sgd", "muon"),
    "filter_lr": positive_number(),
    "filter_momentum": MOMENTUM,
    "newton_schulz_steps": positive_int("an integer from 1 to 10", maximum=10),
    "bias_lr": positive_number(),
    "head_lr": positive_number(),
    "muon_weight_decay": Rule((int, float), "a number >= 0", minimum=0),
    "head_unit_std": boolean(),
    "initial_lr_fraction": fraction(),
    "whiten_bias_epochs": Rule((int,), "null (always trained) or an integer >= 0", nullable=True, minimum=0),
    "lookahead_every": non_negative_int("an integer >= 0 (steps; 0 = off)"),
    "lookahead_start_epoch": non_negative_int(),
    "lookahead_decay": fraction(),
    "lookahead_power": Rule((int, float), "a number >= 0", minimum=0),
}

INPUT_CHANNELS = 3
WHITEN_PATCH = 2
WHITEN_EPS = 5e-4  # airbench's: keeps near-zero-variance directions from exploding
WHITEN_IMAGES = 5000  # training images the patch statistics are estimated from


def whitening_kernel(images, eps=WHITEN_EPS):
    """2x2 conv kernels that whiten the patches of `images` (float, N x H x W x C): shape (2, 2, C, 2*2*2*C).

    The eigenvectors of the patches' second-moment matrix, each divided by the square
    root of its eigenvalue, largest first; then the same kernels negated, so that a
    GELU after them keeps both signs of every direction.
    """
    images = np.asarray(images, np.float64)
    channels = images.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(images, (WHITEN_PATCH, WHITEN_PATCH), axis=(1, 2))
    # windows: (N, H-1, W-1, C, 2, 2) -> patches flattened in the kernel's (row, col, channel) order
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, WHITEN_PATCH * WHITEN_PATCH * channels)
    second_moment = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(second_moment)
    order = np.argsort(eigenvalues)[::-1]
    scaled = eigenvectors[:, order] / np.sqrt(eigenvalues[order] + eps)
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(WHITEN_PATCH, WHITEN_PATCH, channels, -1).astype(np.float32)


# airbench94's CIFAR_MEAN and CIFAR_STD: the model's standardisation when it is built without images.
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def channel_statistics(train_images):
    """Per-channel mean and std of the training pixels in [0, 1] (CIFAR-10's are airbench's constants)."""
    if train_images is None:
        return np.array(CIFAR_MEAN), np.array(CIFAR_STD)
    pixels = np.asarray(train_images, np.float64) / 255
    return pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))


def standardization(mean, std):
    """airbench's `T.Normalize(CIFAR_MEAN, CIFAR_STD)` of pixels in [0, 1], on the model's input p - 0.5."""
    return layers.Normalization(mean=np.asarray(mean) - 0.5, variance=np.asarray(std) ** 2, name="standardize")


def kernel_initializer(recipe):
    """airbench's (PyTorch's default, U(+-1/sqrt(fan_in))) or Keras's own (Glorot uniform)."""
    if recipe["init"] == "airbench":
        return keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")
    return "glorot_uniform"


def identity_start(conv):
    """airbench's implicit residual: the first in-channels filters of a 3x3 conv start as the identity."""
    kernel = conv.get_weights()[0]
    channels = min(kernel.shape[2], kernel.shape[3])
    kernel[:, :, :, :channels] = 0
    kernel[1, 1, np.arange(channels), np.arange(channels)] = 1
    conv.set_weights([kernel])


def augmentation(recipe, seed):
    """The training-time augmentation layers the recipe asks for (identity at inference)."""
    found = []
    if recipe["flip"] == "random":  # "alternating" is done by the training batches
        found.append(layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
    if recipe["translate"]:
        found.append(RandomShift(recipe["translate"], seed=seed + 1, name="random_translate"))
    return found


def batchnorm(recipe, name, sync_batchnorm=False):
    """airbench's BatchNorm: no scale, its bias added by a ScaledBias after it, eps 1e-12.

    airbench's hyperparameter batchnorm_momentum = 0.6 goes to PyTorch as momentum=1-0.6, PyTorch's
    weight of each new batch: running = 0.6 * running + 0.4 * batch. Keras's `momentum` is the weight
    of the running value itself, so it takes the 0.6 as it is. (PyTorch's running variance uses the
    batch's unbiased variance, Keras's the biased one: a relative 1/(n-1) for n values per channel.)
    """
    return layers.BatchNormalization(
        momentum=recipe["batchnorm_momentum"],
        epsilon=1e-12,
        center=False,
        scale=False,
        synchronized=sync_batchnorm,
        name=name,
    )


def bias_scale(recipe):
    """ScaledBias's factor: sqrt(bias_lr_scale) makes plain SGD's rate bias_lr_scale times larger for the
    BatchNorm biases (airbench94's bias group); Muon's optimizer gives them their own rate instead."""
    return recipe["bias_lr_scale"] ** 0.5 if recipe["optimizer"] == "sgd" else 1.0


def conv_bn_gelu(x, filters, recipe, name, pool=False, sync_batchnorm=False):
    """conv 3x3 (no bias), optional 2x2 max-pool, BatchNorm without scale, scaled bias, GELU."""
    conv = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=kernel_initializer(recipe), name=f"{name}_conv"
    )
    x = conv(x)
    if recipe["init"] == "airbench":
        identity_start(conv)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = batchnorm(recipe, f"{name}_bn", sync_batchnorm)(x)
    x = ScaledBias(bias_scale(recipe), name=f"{name}_bias")(x)
    return layers.Activation("gelu", name=f"{name}_gelu")(x)


def build(num_classes, recipe, train_images=None, seed=0, replicas=1):
    """The fast model for `recipe` (the `fast` params); `train_images` (uint8) set the whitening layer.

    Several `replicas`: BatchNorm statistics over the global batch of all replicas, not each
    replica's share, so that several devices train what one device would (tests/test_distribute.py).
    """
    sync_batchnorm = replicas > 1
    inputs, x = normalized_input()
    for layer in augmentation(recipe, seed):
        x = layer(x)
    mean, std = channel_statistics(train_images)
    x = standardization(mean, std)(x)
    whiten_filters = 2 * WHITEN_PATCH * WHITEN_PATCH * INPUT_CHANNELS
    # Frozen: its kernels are the data's whitening transform, not learned.
    whiten = layers.Conv2D(whiten_filters, WHITEN_PATCH, use_bias=False, trainable=False, name="whiten")
    x = whiten(x)
    # airbench's whitening conv has a bias, zero at the start (its Conv zeroes every bias) and acting on
    # standardised images, so weight decay pulls it towards 0 as there. It learns at the plain rate (it is
    # not a BatchNorm bias) for the first `whiten_bias_epochs` (cifar.training.callbacks.FreezeAfter).
    x = ScaledBias(1.0, name="whiten_bias")(x)
    if train_images is not None:
        # airbench: the kernel from its first 5,000 training images, standardised. Here 5,000 chosen at
        # random (by `seed`): prepared image folders are sorted by class, and their first 5,000 one class.
        sample = np.sort(np.random.default_rng(seed).permutation(len(train_images))[:WHITEN_IMAGES])
        standardised = (np.asarray(train_images[sample], np.float64) / 255 - mean) / std
        whiten.set_weights([whitening_kernel(standardised)])
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for index, width in enumerate(recipe["widths"], start=1):
        x = conv_bn_gelu(x, width, recipe, f"block{index}a", pool=True, sync_batchnorm=sync_batchnorm)
        x = conv_bn_gelu(x, width, recipe, f"block{index}b", sync_batchnorm=sync_batchnorm)
    # airbench's nn.MaxPool2d(3): the last map is 3x3 (the whitening conv, unpadded, leaves 31x31),
    # so its one window is the whole map
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    head = layers.Dense(num_classes, use_bias=False, kernel_initializer=kernel_initializer(recipe), name="dense")
    x = layers.Rescaling(recipe["output_scale"], name="scale")(head(x))
    if recipe["head_unit_std"]:  # airbench94_muon's reset: `w *= 1 / w.std()`
        (kernel,) = head.get_weights()
        head.set_weights([kernel / kernel.std()])
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name="fast")


# Training: what the loop (cifar/training/loop.py) asks of every model, besides `build`.


def learning_rate(recipe, steps_per_epoch):
    """airbench's triangle (linear up from `initial_lr_fraction`, linear down), warm-up from 0 then cosine,
    or airbench94_muon's linear decay to 0. For Muon, the fraction of each group's initial rate (peak 1)."""
    peak_rate = recipe["learning_rate"] if recipe["optimizer"] == "sgd" else 1.0
    total = recipe["epochs"] * steps_per_epoch
    if recipe["schedule"] == "linear":
        return keras.optimizers.schedules.PolynomialDecay(peak_rate, total, end_learning_rate=0.0)
    if recipe["schedule"] == "cosine":
        return schedules.recipe_warmup_cosine(
            {**recipe, "learning_rate": peak_rate}, steps_per_epoch, recipe["final_lr_fraction"]
        )
    peak = round(recipe["warmup_epochs"] * steps_per_epoch)
    return schedules.Triangle(peak_rate, peak, total, recipe["initial_lr_fraction"], recipe["final_lr_fraction"])


def optimizer(recipe, steps_per_epoch):
    """Nesterov SGD on the recipe's schedule, with decoupled weight decay, and optionally a moving average
    of the weights; or airbench94_muon's Muon for the filters and Nesterov SGD groups for the rest
    (cifar/training/muon.py), on the summed loss's gradients."""
    if recipe["optimizer"] == "muon":
        return AirbenchMuon(
            learning_rate(recipe, steps_per_epoch),
            filter_lr=recipe["filter_lr"],
            filter_momentum=recipe["filter_momentum"],
            newton_schulz_steps=recipe["newton_schulz_steps"],
            bias_lr=recipe["bias_lr"],
            head_lr=recipe["head_lr"],
            momentum=recipe["momentum"],
            weight_decay=recipe["muon_weight_decay"] * recipe["batch_size"],
            gradient_scale=recipe["batch_size"],  # airbench sums the loss over the (global) batch
            # the whitening bias's rate falls to 0 over its epochs (null: over the whole run, as the others')
            whiten_bias_steps=(
                recipe["epochs"] if recipe["whiten_bias_epochs"] is None else recipe["whiten_bias_epochs"]
            )
            * steps_per_epoch,
        )
    ema = recipe["ema_momentum"]
    return keras.optimizers.SGD(
        learning_rate(recipe, steps_per_epoch),
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
