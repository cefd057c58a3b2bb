"""airbench94 (the model, and the network it shares with airbench94_muon) against airbench94's own code
(airbench94.py at commit 01a2367, the file that benchmarks/bench_airbench.py pins), each reference
transcribed from it in NumPy, PyTorch's semantics spelled out: BatchNorm's running statistics, the
translation, the whitening layer and its bias, the steps of an epoch, test-time augmentation and
lookahead over airbench's step counts."""

import dataclasses

import keras
import numpy as np
import pytest
from scipy.special import softmax

from benchmarks.recipes import SPEEDRUN
from cifar.evaluation import tta
from cifar.models import airbench94, airbench94_muon, seed_cnn
from cifar.models.airbench94 import Lookahead
from cifar.models.airbench_net import batchnorm, channel_statistics
from cifar.network.layers import RandomShift
from cifar.training.batches import Batching, training_batches
from cifar.training.loop import epoch_steps
from tests.helpers import project_recipe


@pytest.fixture(scope="module")
def recipe():
    return project_recipe("airbench94")


@pytest.mark.parametrize("name", ["airbench94", "airbench94_muon"])
def test_the_defaults_are_airbench_s_choices(name):
    recipe = project_recipe(name)
    # hyp['net']['batchnorm_momentum']; airbench94_muon's defaults are the speedrun's (its BatchNorm's 0.5566)
    assert recipe.batchnorm_momentum == (0.6 if name == "airbench94" else SPEEDRUN["batchnorm_momentum"])
    assert recipe.translate == 2 and recipe.flip == "alternating"  # hyp['aug']
    assert recipe.drop_last_batch is True  # CifarLoader: drop_last = train


# BatchNorm: airbench's BatchNorm(num_features, momentum=hyp 0.6) calls
#   nn.BatchNorm2d.__init__(num_features, eps=1e-12, momentum=1 - momentum)
# and PyTorch updates, in training, running = (1 - momentum) * running + momentum * batch statistic,
# the variance's batch statistic unbiased (n / (n - 1)); running_mean starts at 0, running_var at 1.
def pytorch_running_statistics(batches, momentum):
    mean, var = np.zeros(batches[0].shape[-1]), np.ones(batches[0].shape[-1])
    for batch in batches:
        values = batch.reshape(-1, batch.shape[-1]).astype(np.float64)
        mean = (1 - momentum) * mean + momentum * values.mean(axis=0)
        var = (1 - momentum) * var + momentum * values.var(axis=0, ddof=1)
    return mean, var


def test_batchnorm_running_statistics_follow_pytorch_s_update_with_airbench_s_momentum(recipe):
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 2.0, (16, 8, 8, 4)).astype(np.float32) for loc in (1.0, -3.0, 5.0, 0.5, 2.0)]
    layer = batchnorm(recipe, "bn")
    for batch in batches:
        layer(batch, training=True)
    mean, var = pytorch_running_statistics(batches, momentum=1 - recipe.batchnorm_momentum)
    np.testing.assert_allclose(np.asarray(layer.moving_mean), mean, rtol=1e-5, atol=1e-5)
    # Keras's running variance takes the biased batch variance: 1/(n-1) relative, n = 1,024 values here
    np.testing.assert_allclose(np.asarray(layer.moving_variance), var, rtol=2e-3)


# Translation: CifarLoader pads the (normalised) images once, F.pad(images, (2,)*4, 'reflect'), and
# each epoch `batch_crop` draws shifts = torch.randint(-r, r+1, size=(len(images), 2)) and takes
# images[..., r+sy : r+sy+32, r+sx : r+sx+32]. PyTorch's 'reflect' does not repeat the edge pixel.
def airbench_crops(image, r=2):
    """Every crop batch_crop can return for `image` (H, W, C): {(sy, sx): crop}."""
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")  # PyTorch's 'reflect'
    height, width = image.shape[:2]
    return {
        (sy, sx): padded[r + sy : r + sy + height, r + sx : r + sx + width]
        for sy in range(-r, r + 1)
        for sx in range(-r, r + 1)
    }


def test_translation_is_airbench_s_whole_pixel_crop_of_the_reflect_padded_image(recipe):
    images = np.random.default_rng(1).normal(size=(4000, 32, 32, 3)).astype(np.float32)
    layer = RandomShift(recipe.translate, seed=3)
    shifted = np.asarray(layer(images, training=True))
    drawn = []
    for image, out in zip(images, shifted):
        matches = [s for s, crop in airbench_crops(image, recipe.translate).items() if np.array_equal(out, crop)]
        assert len(matches) == 1, "each output is exactly one of airbench's crops"
        drawn.append(matches[0])
    drawn = np.array(drawn)
    # -2..2 equally likely on each axis, independently: each of the 25 pairs about 1/25
    for axis in (0, 1):
        frequencies = np.bincount(drawn[:, axis] + 2, minlength=5) / len(drawn)
        np.testing.assert_allclose(frequencies, 0.2, atol=0.025)
    pairs = np.bincount((drawn[:, 0] + 2) * 5 + drawn[:, 1] + 2, minlength=25) / len(drawn)
    np.testing.assert_allclose(pairs, 0.04, atol=0.015)
    np.testing.assert_array_equal(np.asarray(layer(images[:8], training=False)), images[:8])


# The whitening layer: airbench standardises the images, x = (p - CIFAR_MEAN) / CIFAR_STD, and its first
# layer is Conv(3, 24, kernel_size=2, padding=0, bias=True), whose reset_parameters zeroes the bias;
# init_whitening_conv sets the weight from the first 5,000 training images (below, transcribed).
def airbench_whitening_weight(standardised, eps=5e-4):
    """get_patches + get_whitening_parameters + init_whitening_conv, on NHWC images: (24, C, 2, 2)."""
    x = standardised.transpose(0, 3, 1, 2)  # NCHW, as airbench's tensors
    n, c = x.shape[:2]
    # x.unfold(2,h,1).unfold(3,w,1).transpose(1,3).reshape(-1,c,h,w)
    windows = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(2, 3))  # (N, C, H', W', 2, 2)
    patches = windows.transpose(0, 3, 2, 1, 4, 5).reshape(-1, c, 2, 2)
    flat = patches.reshape(len(patches), -1)
    covariance = flat.T @ flat / len(flat)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # UPLO='L'; the matrix is symmetric
    eigenvalues = eigenvalues[::-1].reshape(-1, 1, 1, 1)
    eigenvectors = eigenvectors.T.reshape(c * 4, c, 2, 2)[::-1]
    scaled = eigenvectors / np.sqrt(eigenvalues + eps)
    return np.concatenate([scaled, -scaled])


def airbench_first_layer(weight, bias, standardised):
    """F.conv2d(x, weight, bias), padding 0, NHWC in and out."""
    windows = np.lib.stride_tricks.sliding_window_view(standardised, (2, 2), axis=(1, 2))  # N,H',W',C,2,2
    return np.einsum("nyxcij,ocij->nyxo", windows, weight) + bias


def test_the_whitening_layer_is_airbench_s_on_standardised_images_with_its_bias_starting_at_zero(recipe):
    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.normal(size=(300, 32, 32, 3)), axis=2) * 12 + 128 + np.linspace(-30, 30, 3)
    train = np.clip(smooth, 0, 255).astype(np.uint8)
    model = airbench94.build(dataclasses.replace(recipe, widths=[8, 8, 8]), 10, train_images=train)
    assert not np.any(model.get_layer("whiten_bias").get_weights()[0])  # zero, as airbench's
    probe = keras.Model(model.inputs, model.get_layer("whiten_bias").output)
    images = train[:5]
    mean, std = channel_statistics(train)
    standardised = (images / 255 - mean) / std
    theirs_weight = airbench_whitening_weight((train / 255 - mean) / std)
    bias = rng.normal(size=24).astype(np.float32)  # a bias learned since: added to the whitened output
    model.get_layer("whiten_bias").set_weights([bias])
    ours = np.asarray(probe(images, training=False), np.float64) - bias
    theirs = airbench_first_layer(theirs_weight, 0.0, standardised)
    # Eigenvectors have no sign of their own: filter k may be airbench's filter k or its negative,
    # filter k + 12, which the concatenation also holds.
    for k in range(12):
        same = np.allclose(ours[..., k], theirs[..., k], rtol=1e-3, atol=1e-3)
        flipped = np.allclose(ours[..., k], theirs[..., k + 12], rtol=1e-3, atol=1e-3)
        assert same or flipped, f"filter {k}"
        np.testing.assert_allclose(ours[..., k + 12], -ours[..., k], rtol=1e-5, atol=1e-5)


def test_channel_statistics_default_to_airbench_s_cifar_constants():
    mean, std = channel_statistics(None)
    np.testing.assert_array_equal(mean, [0.4914, 0.4822, 0.4465])
    np.testing.assert_array_equal(std, [0.2470, 0.2435, 0.2616])


# The steps of an epoch: CifarLoader.__len__ is len(images) // batch_size when drop_last (training).
def test_an_epoch_has_airbench_s_steps_and_leaves_out_the_partial_batch(recipe):
    airbench = Batching(alternating_flip=True, drop_last_batch=True)  # alternating flip, partial batch left out
    assert airbench94.batching(recipe) == airbench94_muon.batching(project_recipe("airbench94_muon")) == airbench
    assert seed_cnn.batching(project_recipe("seed_cnn")) == Batching(False, False)  # the tutorial's: neither
    assert epoch_steps(50000, 1024, airbench, "airbench94") == 50000 // 1024 == 48
    assert epoch_steps(50000, 256, airbench94.batching(recipe), "airbench94") == 195
    assert epoch_steps(50000, 32, Batching(), "seed_cnn") == 1563  # the tutorial's Keras fit keeps it
    x, y = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 32, 32, 3), np.uint8), np.eye(10)
    batches = list(training_batches(x, y, 4, seed=0, first_epoch=0, epochs=2, batching=airbench))
    assert [len(images) for images, _ in batches] == [4, 4, 4, 4]
    with pytest.raises(Exception, match=r"airbench94.batch_size is 1024, more than the 100 training images"):
        epoch_steps(100, 1024, airbench, "airbench94")


# Test-time augmentation, level 2: airbench's infer_mirror_translate, on logits:
#   infer_mirror(x) = 0.5 * net(x) + 0.5 * net(x.flip(-1))
#   padded = F.pad(x, (1,)*4, 'reflect'); views padded[..., 0:32, 0:32] and padded[..., 2:34, 2:34]
#   return 0.5 * infer_mirror(x) + 0.5 * mean(infer_mirror(view) for view in views)
def airbench_tta_logits(logits_of, images, level):
    def infer_mirror(x):
        return 0.5 * logits_of(x) + 0.5 * logits_of(x[:, :, ::-1])

    if level == 1:
        return infer_mirror(images)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [padded[:, 0:32, 0:32], padded[:, 2:34, 2:34]]
    return 0.5 * infer_mirror(images) + 0.5 * np.mean([infer_mirror(v) for v in views], axis=0)


@pytest.mark.parametrize("separate_softmax", [True, False])
@pytest.mark.parametrize("level", [1, 2])
def test_test_time_augmentation_averages_logits_as_airbench(level, separate_softmax):
    batch = np.random.default_rng(2).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(stddev=0.2, seed=1))
    logits_model = keras.Model(inputs, dense(x))
    if separate_softmax:  # as both models of the zoo end
        model = keras.Model(inputs, keras.layers.Activation("softmax")(logits_model.output))
    else:  # a softmax inside the last layer: the scores are recovered from the probabilities
        fused = keras.layers.Dense(10, activation="softmax")
        model = keras.Model(inputs, fused(x))
        fused.set_weights(dense.get_weights())

    def logits_of(images):
        return np.asarray(logits_model.predict(np.ascontiguousarray(images), verbose=0), np.float64)

    expected = softmax(airbench_tta_logits(logits_of, batch, level), axis=1)
    ours = tta.predict(model, batch, level=level, batch_size=4)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6)
    averaged_probabilities = sum(w * model.predict(v, verbose=0) for w, v in tta.weighted_views(batch, level))
    assert not np.allclose(ours, averaged_probabilities, atol=1e-4)  # the test tells the two apart


# Lookahead, in airbench's own loop (train(), transcribed; LookaheadState.update below):
#   current_steps += 1 after each step
#   if epoch >= start_epochs and current_steps % every_n_steps == 0:
#       if lookahead_state is None: lookahead_state = LookaheadState(model)
#       else: rho = decay_base ** every_n_steps * (current_steps / total_train_steps) ** decay_pow
#             lookahead_state.update(model, decay=rho)
#   after each epoch: if lookahead_state is not None: lookahead_state.update(model, decay=1.0)
# LookaheadState.update: ema.lerp_(param, 1 - decay); param.copy_(ema), for every float tensor of the state_dict.
@pytest.mark.parametrize(
    "steps_per_epoch, epochs, every, start, decay, power",
    [
        (6, 3, 2, 1, 0.9, 2.0),
        (195, 8, 5, 3, 0.95, 3.0),  # airbench94's defaults' 50,000 // 256 steps an epoch, every 5 (copy-back between)
        (48, 10, 5, 3, 0.95, 3.0),  # airbench94's own 48 steps of 1,024
    ],
)
def test_lookahead_follows_airbench_s_loop(steps_per_epoch, epochs, every, start, decay, power):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = keras.layers.BatchNormalization(name="bn")(keras.layers.Dense(3, name="dense")(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.05, momentum=0.5), "mse")
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2 * steps_per_epoch, 4)).astype("float32"), rng.normal(size=(2 * steps_per_epoch, 3))

    class Snapshot(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.states = []

        def on_train_batch_end(self, batch, logs=None):
            self.states.append([np.array(v) for v in self.model.variables if "float" in str(v.dtype)])

    before, after = Snapshot(), Snapshot()
    lookahead = Lookahead(every, start, decay, power, steps_per_epoch, epochs)
    model.fit(x, y, batch_size=2, epochs=epochs, shuffle=False, verbose=0, callbacks=[before, lookahead, after])

    total_train_steps = steps_per_epoch * epochs
    lookahead_state, current_steps = None, 0
    for epoch in range(epochs):
        for batch in range(steps_per_epoch):
            params = before.states[current_steps]  # the weights the optimizer step left
            current_steps += 1
            if epoch >= start and current_steps % every == 0:
                if lookahead_state is None:
                    lookahead_state = [p.copy() for p in params]
                else:
                    rho = decay**every * (current_steps / total_train_steps) ** power
                    lookahead_state = [e + (1 - rho) * (p - e) for e, p in zip(lookahead_state, params)]
                    params = lookahead_state
            if batch == steps_per_epoch - 1 and lookahead_state is not None:
                params = lookahead_state  # update(decay=1.0): the average unchanged, copied back
            ours = after.states[current_steps - 1]
            assert len(ours) == len(params) > 2  # the BatchNorm statistics are averaged too
            for mine, theirs in zip(ours, params):
                np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6, err_msg=f"step {current_steps}")


# The end of the network: the whitening conv is unpadded (32 -> 31), three 2x2 pools leave 3x3, and
# airbench's nn.MaxPool2d(3) (stride 3, no padding) takes that whole map: a global max.
def test_the_final_pool_is_airbench_s_max_pool_of_the_3x3_map(recipe):
    model = airbench94.build(dataclasses.replace(recipe, widths=[8, 8, 8]), 10)
    probe = keras.Model(model.inputs, [model.get_layer("block3b_gelu").output, model.get_layer("pool").output])
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    last_map, pooled = (np.asarray(t) for t in probe(images, training=False))
    assert last_map.shape[1:3] == (3, 3)
    np.testing.assert_allclose(pooled, last_map[:, 0:3, 0:3].max(axis=(1, 2)), rtol=1e-6)  # its one window
