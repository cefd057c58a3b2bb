"""What airbench94 and airbench94_muon took from airbench's code, each checked against what it does.

The schedule (its `triangle`), the alternating flip (its CifarLoader), the identity-initialised
convs (its Conv.reset_parameters), the whitening layer on standardised inputs (its
init_whitening_conv), the whitening bias frozen after some epochs (requires_grad False) and
lookahead (its LookaheadState), and a killed run of either model with all of them resuming exactly.
"""

import dataclasses
import warnings

import keras
import numpy as np
import pytest

from cifar.models import airbench94, airbench94_muon, seed_cnn
from cifar.models.airbench94 import Triangle
from cifar.models.airbench_net import FreezeAfter
from cifar.network.layers import ScaledBias
from cifar.training.batches import Batching, training_batches
from tests.helpers import prepare_workspace, project_recipe, train_in_workspace


def images(count, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize("total, peak, start, end", [(100, 23, 0.2, 0.07), (37, 0, 0.5, 0.0), (10, 9, 0.0, 0.3)])
def test_triangle_is_airbenchs_piecewise_linear_schedule(total, peak, start, end):
    schedule = Triangle(2.0, peak, total, start, end)
    steps = np.arange(total + 1)
    # airbench's triangle(): a line through (0, start), (peak, 1), (total, end); its rate at step i is lr x that.
    expected = (
        2.0 * np.interp(steps, [0, peak, total], [start, 1, end])
        if peak
        else 2.0 * np.interp(steps, [0, total], [1, end])
    )
    np.testing.assert_allclose([float(schedule(step)) for step in steps], expected, rtol=1e-5, atol=1e-6)
    assert keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule)).get_config() == (
        schedule.get_config()
    )


def flips_by_epoch(x, seed, epochs, first_epoch=0):
    """{image index: [mirrored in epoch e, ...]} from the batches (each image's pixels say which it is)."""
    y = keras.utils.to_categorical(np.zeros(len(x)), 2)
    seen = {}
    for batch, _ in training_batches(x, y, 8, seed, first_epoch, epochs, Batching(alternating_flip=True)):
        for image in batch.numpy():
            index = int(image[0, 0, 0])
            mirrored = image[0, 0, 1] == 1  # column 0 holds 0 in the original, 1 after a mirror
            seen.setdefault(index, []).append(bool(mirrored))
    return seen


def test_alternating_flip_shows_each_image_both_ways_in_turn():
    x = np.zeros((60, 32, 32, 3), np.uint8)
    x[:, :, :, 0] = np.arange(60)[:, None, None]  # the image's index, in every pixel
    x[:, :, -1, 1] = 1  # a mark on the right edge: mirrored, it is on the left
    seen = flips_by_epoch(x, seed=3, epochs=4)
    assert sorted(seen) == list(range(60))
    for index, ways in seen.items():
        assert ways == [ways[0], not ways[0]] * 2, f"image {index} is not mirrored every other epoch: {ways}"
    first_epoch = [ways[0] for ways in seen.values()]
    assert 15 <= sum(first_epoch) <= 45  # a random half, chosen by the seed
    assert flips_by_epoch(x, seed=4, epochs=1) != flips_by_epoch(x, seed=3, epochs=1)
    resumed = flips_by_epoch(x, seed=3, epochs=4, first_epoch=2)
    assert resumed == {index: ways[2:] for index, ways in seen.items()}


def test_convs_start_as_airbenchs_identity_plus_pytorchs_default_init():
    sgd = dataclasses.replace(project_recipe("airbench94"), widths=[8, 16, 24], init="airbench")
    model = airbench94.build(sgd, 10, images(50))  # its head as drawn
    for name in ("block1a_conv", "block1b_conv", "block2a_conv", "block3b_conv"):
        kernel = model.get_layer(name).get_weights()[0]  # (3, 3, in, out)
        channels_in = kernel.shape[2]
        identity = np.zeros((3, 3, channels_in, min(channels_in, kernel.shape[3])), np.float32)
        identity[1, 1, np.arange(identity.shape[3]), np.arange(identity.shape[3])] = 1
        np.testing.assert_array_equal(kernel[..., : identity.shape[3]], identity)
        rest = kernel[..., identity.shape[3] :]
        bound = 1 / np.sqrt(9 * channels_in)  # PyTorch's Conv2d default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        if rest.size:
            assert np.abs(rest).max() <= bound and np.abs(rest).max() > 0.8 * bound
    dense = model.get_layer("dense").get_weights()[0]
    assert np.abs(dense).max() <= 1 / np.sqrt(24)
    # airbench94_muon's reset (its defaults): the same draw, `w *= 1 / w.std()`
    muon = dataclasses.replace(project_recipe("airbench94_muon"), widths=[8, 16, 24], init="airbench")
    unit = airbench94_muon.build(muon, 10, images(50)).get_layer("dense")
    assert muon.head_unit_std and unit.get_weights()[0].std() == pytest.approx(1, rel=1e-5)
    keras_init = airbench94.build(dataclasses.replace(sgd, init="keras"), 10, images(50))
    assert not np.any(keras_init.get_layer("block1b_conv").get_weights()[0][1, 1] == 1)


def tiny_model(batchnorm):
    inputs = keras.Input((4,))
    x = ScaledBias(1.0, name="frozen_later")(keras.layers.Dense(3, name="dense")(inputs))
    outputs = keras.layers.BatchNormalization(name="bn")(x) if batchnorm else x
    return keras.Model(inputs, outputs)


def test_frozen_bias_gets_no_update_at_all_not_even_momentum_or_weight_decay():
    keras.utils.set_random_seed(0)
    model = tiny_model(batchnorm=False)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9, weight_decay=0.5), "mse")
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(32, 4)).astype("float32"), rng.normal(size=(32, 3)).astype("float32")

    class Record(keras.callbacks.Callback):
        biases, kernels = [], []

        def on_epoch_end(self, epoch, logs=None):
            self.biases.append(self.model.get_layer("frozen_later").get_weights()[0])
            self.kernels.append(self.model.get_layer("dense").get_weights()[0])

    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=8, epochs=4, verbose=0, callbacks=[FreezeAfter("frozen_later", 2), Record()])
    assert [str(warning.message) for warning in warned] == []  # frozen as Keras means it: nothing to warn of
    biases, kernels = Record.biases, Record.kernels
    assert not np.array_equal(biases[0], biases[1])  # learning in epochs 0 and 1
    np.testing.assert_array_equal(biases[1], biases[2])  # then not moved, though momentum and decay were on
    np.testing.assert_array_equal(biases[2], biases[3])
    assert not np.array_equal(kernels[2], kernels[3])  # the rest still learns


def test_each_model_asks_for_its_callbacks():
    muon = project_recipe("airbench94_muon")
    assert [type(c).__name__ for c in airbench94_muon.callbacks(muon, 7)] == ["FreezeAfter"]  # no lookahead
    assert airbench94_muon.callbacks(dataclasses.replace(muon, whiten_bias_epochs=None), 7) == []
    recipe = project_recipe("airbench94")  # airbench94's, with lookahead
    freeze, lookahead = airbench94.callbacks(recipe, steps_per_epoch=7)
    assert (freeze.layer_name, freeze.epochs) == ("whiten_bias", recipe.whiten_bias_epochs)
    assert (lookahead.every, lookahead.start_epoch, lookahead.total_steps) == (
        recipe.lookahead_every,
        recipe.lookahead_start_epoch,
        7 * recipe.epochs,
    )
    assert airbench94.callbacks(dataclasses.replace(recipe, whiten_bias_epochs=None, lookahead_every=0), 7) == []
    tutorial = dataclasses.replace(project_recipe("seed_cnn"), schedule="warmup_cosine")
    assert seed_cnn.callbacks(tutorial, 7) == []  # per-step schedule: none


@pytest.mark.parametrize("model", ["airbench94", "airbench94_muon"])
def test_killed_run_with_every_addition_resumes_exactly(tmp_path, model):
    """Lookahead's average, the frozen bias and the flips' phase all come back from a checkpoint; with
    airbench94_muon, its optimizer's momentum buffers and the groups' rates too."""
    # three epochs of 3 steps of 16 (60 images, TINY's 10 held out), over each model's tiny recipe
    additions = {"epochs": 3, "batch_size": 16, "flip": "alternating", "init": "airbench", "whiten_bias_epochs": 1}
    if model == "airbench94":  # airbench94's triangle and lookahead
        additions.update(schedule="triangle", lookahead_every=2, lookahead_start_epoch=1)
    else:  # airbench94_muon's: no lookahead, the linear decay, the head at unit std
        additions.update(head_unit_std=True)
    prepare_workspace(
        tmp_path / "whole", precision="float32", train_images=64, test_images=20, model=model, **additions
    )

    class WhitenBias(keras.callbacks.Callback):
        values = []

        def on_train_begin(self, logs=None):
            self.on_epoch_end(-1)

        def on_epoch_end(self, epoch, logs=None):
            self.values.append(self.model.get_layer("whiten_bias").get_weights()[0])

    whole, _ = train_in_workspace(tmp_path / "whole", callbacks=[WhitenBias()])
    initial, first, second, third = WhitenBias.values
    assert not np.array_equal(initial, first)  # it learned in the first epoch, then
    np.testing.assert_array_equal(first, second)  # the stage froze it after whiten_bias_epochs
    np.testing.assert_array_equal(second, third)

    class Crash(Exception):
        pass

    class CrashAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise Crash

    prepare_workspace(
        tmp_path / "killed", precision="float32", train_images=64, test_images=20, model=model, **additions
    )
    with pytest.raises(Crash):
        train_in_workspace(tmp_path / "killed", callbacks=[CrashAfterSecondEpoch()])
    resumed, _ = train_in_workspace(tmp_path / "killed")
    for ours, theirs in zip(resumed.get_weights(), whole.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
