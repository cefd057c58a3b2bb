"""What airbench94 and airbench94_muon (cifar/models/airbench94.py, airbench94_muon.py) share: the keys of
their recipes that mean the same in both (`AirbenchRecipe`), the network, its augmentation, the batches
(airbench's alternating flip, the last partial batch dropped), the label-smoothed loss, and the whitening
bias frozen after a few epochs. A port of Keller Jordan's airbench94 network (cifar10-airbench).

The network: the images standardised per channel (airbench's normalisation), a frozen 2x2
patch-whitening convolution computed from the training images, then three conv groups (conv, max-pool,
BatchNorm, GELU, conv, BatchNorm, GELU; SiLU instead where `activation` says), global max-pooling and a
scaled linear layer.
Training-time augmentation (random horizontal flip, airbench's whole-pixel translation with reflected
borders) is part of the network, so it runs inside the compiled training step and is identity at
inference; airbench's alternating flip, which needs to know each image, is done by the training
batches (`batching`). The remaining differences from airbench are listed in docs/fast-model.md.
"""

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers

from cifar.core.params import ListRule, Rule, boolean, choice, fraction, param, positive_int, positive_number
from cifar.network.layers import (
    ColourJitter,
    FusedBatchNormalization,
    RandomShift,
    ScaledBias,
    gelu,
    normalized_input,
    silu,
)
from cifar.training.batches import Batching
from cifar.training.recipe import TrainingRecipe

MOMENTUM = Rule((int, float), "a number from 0 to less than 1", minimum=0, maximum=0.999)


@dataclass(frozen=True)
class AirbenchRecipe(TrainingRecipe):
    """The keys both airbench recipes have; each model's `Recipe` adds its optimizer's."""

    momentum: float = param(MOMENTUM)  # Nesterov SGD's (airbench94_muon: the biases' and the head's)
    label_smoothing: float = param(fraction("a number from 0 to 1 (0 = off)"))
    widths: list = param(
        ListRule(positive_int("an integer from 1 to 4096", maximum=4096), 3, "a list of 3 integers from 1 to 4096")
    )
    init: str = param(choice("airbench", "keras"))  # kernel_initializer, identity_start
    activation: str = param(choice("gelu", "silu"))  # the conv groups' (the whitening layer's is always GELU)
    batchnorm_momentum: float = param(fraction("a number from 0 to 1 (the running statistics' weight on themselves)"))
    # fractions allowed: the bias is frozen from the first epoch that starts at or after it
    whiten_bias_epochs: float = param(
        Rule((int, float), "null (always trained) or a number >= 0", nullable=True, minimum=0)
    )
    output_scale: float = param(positive_number())  # multiplies the class scores
    flip: str = param(choice("alternating", "random", "none"))
    translate: int = param(Rule((int,), "an integer from 0 to 8 (pixels; 0 = off)", minimum=0, maximum=8))
    brightness: float = param(fraction("a number from 0 to 1 (0 = off)"))  # the speedrun's jitter (ColourJitter)
    contrast: float = param(fraction("a number from 0 to 1 (0 = off)"))
    drop_last_batch: bool = param(boolean())


INPUT_CHANNELS = 3
HEAD, WHITEN_BIAS = "dense", "whiten_bias"  # layer names airbench94_muon's optimizer groups by
WHITEN_PATCH = 2
WHITEN_EPS = 5e-4  # airbench's: keeps near-zero-variance directions from exploding
WHITEN_IMAGES = 5000  # training images the patch statistics are estimated from
# `activation`'s values: Keras's GELU and SiLU, computed faster (cifar.network.layers)
ACTIVATIONS = {"gelu": gelu, "silu": silu}


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
    if recipe.init == "airbench":
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
    if recipe.flip == "random":  # "alternating" is done by the training batches
        found.append(layers.RandomFlip("horizontal", seed=seed, name="random_flip"))
    if recipe.translate:
        found.append(RandomShift(recipe.translate, seed=seed + 1, name="random_translate"))
    return found


def batchnorm(recipe, name, sync_batchnorm=False):
    """airbench's BatchNorm: no scale, its bias added by a ScaledBias after it, eps 1e-12.

    airbench's hyperparameter batchnorm_momentum = 0.6 goes to PyTorch as momentum=1-0.6, PyTorch's
    weight of each new batch: running = 0.6 * running + 0.4 * batch. Keras's `momentum` is the weight
    of the running value itself, so it takes the 0.6 as it is. (PyTorch's running variance uses the
    batch's unbiased variance, Keras's the biased one: a relative 1/(n-1) for n values per channel.)
    """
    return FusedBatchNormalization(
        momentum=recipe.batchnorm_momentum,
        epsilon=1e-12,
        center=False,
        scale=False,
        synchronized=sync_batchnorm,
        name=name,
    )


def conv_bn_act(x, filters, recipe, name, pool=False, sync_batchnorm=False, bias_scale=1.0):
    """conv 3x3 (no bias), optional 2x2 max-pool, BatchNorm without scale, its bias (ScaledBias), and the
    recipe's activation: airbench's GELU or the speedrun's SiLU (cheaper on a CPU: docs/speed.md)."""
    conv = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=kernel_initializer(recipe), name=f"{name}_conv"
    )
    x = conv(x)
    if recipe.init == "airbench":
        identity_start(conv)
    if pool:
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = batchnorm(recipe, f"{name}_bn", sync_batchnorm)(x)
    x = ScaledBias(bias_scale, name=f"{name}_bias")(x)
    return layers.Activation(ACTIVATIONS[recipe.activation], name=f"{name}_{recipe.activation}")(x)


def network(
    recipe, num_classes, train_images=None, seed=0, replicas=1, bias_scale=1.0, head_unit_std=False, name="airbench"
):
    """The network for `recipe`; `train_images` (uint8) set the whitening layer (airbench's constants without).

    `bias_scale`: the BatchNorm biases' ScaledBias factor; `head_unit_std`: the last layer's initial weights
    rescaled to standard deviation 1 (airbench94_muon's reset: `w *= 1 / w.std()`). Several `replicas`:
    BatchNorm statistics over the global batch of all replicas, not each replica's share, so that several
    devices train what one device would (tests/test_distribute.py).
    """
    sync_batchnorm = replicas > 1
    inputs, x = normalized_input()
    for layer in augmentation(recipe, seed):
        x = layer(x)
    mean, std = channel_statistics(train_images)
    x = standardization(mean, std)(x)
    if recipe.brightness or recipe.contrast:  # on the standardised images, as the speedrun's loader
        x = ColourJitter(recipe.brightness, recipe.contrast, seed=seed + 2, name="random_colour_jitter")(x)
    whiten_filters = 2 * WHITEN_PATCH * WHITEN_PATCH * INPUT_CHANNELS
    # Frozen: its kernels are the data's whitening transform, not learned.
    whiten = layers.Conv2D(whiten_filters, WHITEN_PATCH, use_bias=False, trainable=False, name="whiten")
    x = whiten(x)
    # airbench's whitening conv has a bias, zero at the start (its Conv zeroes every bias) and acting on
    # standardised images, so weight decay pulls it towards 0 as there. It learns at the plain rate (it is
    # not a BatchNorm bias) for the first `whiten_bias_epochs` (FreezeAfter below).
    x = ScaledBias(1.0, name=WHITEN_BIAS)(x)
    if train_images is not None:
        # airbench: the kernel from its first 5,000 training images, standardised. Here 5,000 chosen at
        # random (by `seed`): prepared image folders are sorted by class, and their first 5,000 one class.
        sample = np.sort(np.random.default_rng(seed).permutation(len(train_images))[:WHITEN_IMAGES])
        standardised = (np.asarray(train_images[sample], np.float64) / 255 - mean) / std
        whiten.set_weights([whitening_kernel(standardised)])
    x = layers.Activation(ACTIVATIONS["gelu"], name="whiten_gelu")(x)
    for index, width in enumerate(recipe.widths, start=1):
        group = dict(sync_batchnorm=sync_batchnorm, bias_scale=bias_scale)
        x = conv_bn_act(x, width, recipe, f"block{index}a", pool=True, **group)
        x = conv_bn_act(x, width, recipe, f"block{index}b", **group)
    # airbench's nn.MaxPool2d(3): the last map is 3x3 (the whitening conv, unpadded, leaves 31x31),
    # so its one window is the whole map
    x = layers.GlobalMaxPooling2D(name="pool")(x)
    head = layers.Dense(num_classes, use_bias=False, kernel_initializer=kernel_initializer(recipe), name=HEAD)
    x = layers.Rescaling(recipe.output_scale, name="scale")(head(x))
    if head_unit_std:
        (kernel,) = head.get_weights()
        head.set_weights([kernel / kernel.std()])
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


# Training pieces both airbench models use.


def loss(recipe):
    """Cross-entropy with airbench's label smoothing."""
    return keras.losses.CategoricalCrossentropy(label_smoothing=recipe.label_smoothing)


def batching(recipe):
    """airbench's loader: the alternating flip (`flip: alternating`; the others are layers) and the last,
    partial batch of each epoch dropped."""
    return Batching(alternating_flip=recipe.flip == "alternating", drop_last_batch=recipe.drop_last_batch)


class FreezeAfter(keras.callbacks.Callback):
    """Stops training one layer from epoch `epochs` on (airbench's whitening bias, after 3 epochs).

    Keras's way to freeze a layer: `trainable` False, and the training step traced again (once, at the
    switch). The variable then has no gradient and the optimizer leaves it alone entirely (no momentum,
    no weight decay), as PyTorch does for a parameter with requires_grad False. Set at each epoch's start
    from the epoch alone, so a resumed run freezes it as an uninterrupted one (and ScaledBias saves
    itself trainable, so that a checkpoint's optimizer keeps its slots for it).
    """

    def __init__(self, layer_name, epochs):
        super().__init__()
        self.layer_name, self.epochs = layer_name, epochs

    def on_epoch_begin(self, epoch, logs=None):
        layer = self.model.get_layer(self.layer_name)
        trainable = epoch < self.epochs
        if layer.trainable != trainable:
            layer.trainable = trainable
            self.model.make_train_function(force=True)


def whiten_bias_freeze(recipe):
    """The whitening bias frozen after `whiten_bias_epochs` (null: never): a list of 0 or 1 callback."""
    return [] if recipe.whiten_bias_epochs is None else [FreezeAfter(WHITEN_BIAS, recipe.whiten_bias_epochs)]
