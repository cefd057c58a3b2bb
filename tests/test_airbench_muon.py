"""The model airbench94_muon against airbench94_muon.py's own code (cifar10-airbench at commit 096d14d), each
piece transcribed from it in NumPy with PyTorch's semantics spelled out: `zeropower_via_newtonschulz5`
in bfloat16, `Muon.step`, the SGD groups with their weight decay and rates, the linear decay to 0,
the whitening bias's shorter decay, the summed loss, and the head's initialisation and scaling."""

import dataclasses

import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from benchmarks.recipes import AIRBENCH94_MUON_ORIGINAL, TINY
from benchmarks.workspace import PROJECT
from cifar import models
from cifar.core.params import read_params_file
from cifar.models.airbench94_muon import AirbenchMuon, build, newton_schulz, optimizer
from cifar.network.layers import ScaledBias
from tests.helpers import tiny_recipe

# How far a conv kernel may be from the reference after the step test's three steps
FILTER_BOUND = 1e-3


def bf16(values):
    """PyTorch's rounding of a float32 result to bfloat16 (round to nearest even)."""
    return np.asarray(values, np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def bf16_step(values):
    """The distance from a value to the next bfloat16 one away from zero (8 significant bits)."""
    exponent = np.floor(np.log2(np.maximum(np.abs(values), np.finfo(np.float32).tiny)))
    return np.ldexp(1.0, exponent.astype(int) - 7)


def zeropower_via_newtonschulz5(G, steps=3, eps=1e-7):
    """airbench94_muon.py's function, line by line; each bfloat16 op's result rounded to bfloat16, its
    matmuls accumulated in float32 (as PyTorch's bfloat16 matmul on GPU and CPU)."""
    assert len(G.shape) == 2
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = bf16(G)  # X = G.bfloat16()
    X = bf16(X / bf16(bf16(np.linalg.norm(X)) + eps))  # X /= (X.norm() + eps)
    if G.shape[0] > G.shape[1]:
        X = X.T
    for _ in range(steps):
        A = bf16(X @ X.T)
        B = bf16(bf16(b * A) + bf16(bf16(c * A) @ A))  # b * A + c * A @ A, i.e. (c * A) @ A
        X = bf16(bf16(a * X) + bf16(B @ X))
    if G.shape[0] > G.shape[1]:
        X = X.T
    return X


def muon_step(p, g, buf, lr, momentum=0.6, nesterov=True, steps=3):
    """Muon.step for one parameter (PyTorch layout: out-channels first), in float32; returns (p, buf)."""
    buf = momentum * buf + g  # buf.mul_(momentum).add_(g)
    g = g + momentum * buf if nesterov else buf
    p = p * (len(p) ** 0.5 / np.linalg.norm(p))  # p.data.mul_(len(p.data)**0.5 / p.data.norm())
    update = zeropower_via_newtonschulz5(g.reshape(len(g), -1), steps).reshape(g.shape)
    return p - lr * update, buf


def sgd_step(p, g, buf, lr, weight_decay, momentum=0.85):
    """torch.optim.SGD(nesterov=True) for one parameter: weight decay joins the gradient, then momentum."""
    g = g + weight_decay * p
    buf = momentum * buf + g  # dampening 0; the first buffer is g itself, as momentum * 0 + g
    return p - lr * (g + momentum * buf), buf


def to_keras(kernel):
    """A PyTorch conv weight (out, in, kh, kw) as a Keras kernel (kh, kw, in, out)."""
    return np.transpose(kernel, (2, 3, 1, 0))


def relative_distance(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("shape", [(64, 24 * 9), (256, 64 * 9), (40, 300), (300, 40), (256, 256 * 9)])
def test_newton_schulz_is_airbench_s_in_bfloat16(shape):
    G = np.random.default_rng(sum(shape)).normal(size=shape).astype(np.float32)
    ours = newton_schulz(tf.constant(G), 3).numpy()
    reference = zeropower_via_newtonschulz5(G)
    # Both round every op to bfloat16 and sum each matmul in float32, in another order here (oneDNN),
    # so some values land a bfloat16 step away: a step of the largest value, since each is a sum of
    # rounded terms. Measured: on an Intel Xeon (AMX) equal up to (256, 576), 4e-5 of the values apart
    # at (256, 2304); on an AMD EPYC (AVX2) 2.9% of them at (256, 576), relative distance 9.2e-4, and
    # 0.4% at (256, 2304), 2.8e-4, none more than that one step.
    assert np.abs(ours - reference).max() <= bf16_step(np.abs(reference).max())
    assert np.mean(ours != reference) <= 0.05
    assert relative_distance(ours, reference) <= 3e-3
    # what it is for: singular values pulled from their spread towards 1 (0.5-1.5 after 3 steps)
    singular = np.linalg.svd(reference.astype(np.float64), compute_uv=False)
    assert singular.min() > 0.3 and singular.max() < 1.6
    # deliberate breaks far outside the bound (measured 0.08-0.23 and 0.36-0.48): 5 steps, 2 steps
    assert relative_distance(zeropower_via_newtonschulz5(G, steps=5), reference) > 0.05
    assert relative_distance(zeropower_via_newtonschulz5(G, steps=2), reference) > 0.2


def variables_of(model):
    return {variable.path: variable for variable in model.trainable_variables}


@pytest.fixture(scope="module")
def recipe():
    """airbench94_muon's own values at the tiny recipe's widths."""
    return tiny_recipe("airbench94_muon", **{**AIRBENCH94_MUON_ORIGINAL, "widths": TINY["airbench94_muon"]["widths"]})


def test_the_recipe_checks_and_builds_airbench_s_groups(recipe):
    models.recipe("airbench94_muon", read_params_file(PROJECT / "params.yaml"))  # every key has a rule and a value
    model = build(recipe, 10, seed=0)
    # the BatchNorm biases take their rate from the optimizer, not from ScaledBias's reparametrisation
    assert all(layer.scale == 1.0 for layer in model.layers if isinstance(layer, ScaledBias))
    # the head starts at standard deviation 1 (`w *= 1 / w.std()`) and its output is divided by 256 inputs
    assert model.get_layer("dense").get_weights()[0].std() == pytest.approx(1, abs=1e-5)
    assert model.get_layer("scale").scale == pytest.approx(1 / 256)
    kinds = {path: len(variable.shape) for path, variable in variables_of(model).items()}
    assert {path for path, rank in kinds.items() if rank == 4} == {
        f"block{i}{half}_conv/kernel" for i in (1, 2, 3) for half in "ab"
    }
    assert {path.split("/")[0] for path, rank in kinds.items() if rank != 4} == {
        "whiten_bias",
        "dense",
        *(f"block{i}{half}_bias" for i in (1, 2, 3) for half in "ab"),
    }


def test_every_rate_falls_linearly_to_zero_and_the_whitening_bias_s_over_its_epochs(recipe):
    steps_per_epoch = 25  # 50,000 // 2,000
    muon = optimizer(recipe, steps_per_epoch)
    total = recipe.epochs * steps_per_epoch
    for step in (0, 1, 57, 199, 200):
        # main(): group["lr"] = group["initial_lr"] * (1 - step / total_train_steps)
        muon.iterations.assign(step)
        assert float(muon.learning_rate) == pytest.approx(1 - step / total, abs=1e-6)  # each group's fraction
    assert muon.whiten_bias_steps == 3 * steps_per_epoch  # whiten_bias_train_steps = ceil(3 * len(loader))
    assert muon.gradient_scale == 2000 and muon.decay == pytest.approx(2e-6 * 2000)


def test_the_docs_give_airbench94_muon_s_values():
    import re

    import yaml

    guide = (PROJECT / "docs/fast-model.md").read_text()
    line = next(line for line in guide.splitlines() if line.startswith("dvc exp run -n airbench94-muon "))
    assert "-S train.model=airbench94_muon " in line
    found = re.findall(r"-S '?airbench94_muon\.(\w+)=([^\s']+)", line)  # quoted where a shell would glob
    documented = {key: yaml.safe_load(value) for key, value in found}
    defaults = read_params_file(PROJECT / "params.yaml")["airbench94_muon"]
    assert {**defaults, **documented} == {**defaults, **AIRBENCH94_MUON_ORIGINAL}


def test_a_training_step_moves_every_group_as_airbench_s_two_optimizers(recipe):
    """Three steps of the model's optimizer (airbench's values) on its own variables and given gradients
    (of the mean loss), against Muon.step and SGD's groups on the summed loss's gradients (batch_size x
    the mean's)."""
    model = build(recipe, 10, seed=0)
    steps_per_epoch, batch = 2, recipe.batch_size
    # the whitening bias's rate falls over 1 epoch of 2 steps, shorter than the run, to see it reach 0
    muon = optimizer(dataclasses.replace(recipe, whiten_bias_epochs=1), steps_per_epoch)
    assert isinstance(muon, AirbenchMuon) and muon.whiten_bias_steps == 2
    variables = list(model.trainable_variables)
    muon.build(variables)
    rng = np.random.default_rng(0)
    reference = {v.path: np.array(v.numpy(), np.float32) for v in variables}
    buffers = {path: np.zeros_like(value) for path, value in reference.items()}
    total = recipe.epochs * steps_per_epoch
    wd = 2e-6 * batch
    for step in range(3):
        mean_gradients = {v.path: rng.normal(scale=1e-3, size=v.shape).astype(np.float32) for v in variables}
        muon.apply_gradients([(tf.constant(mean_gradients[v.path]), v) for v in variables])
        fraction = 1 - step / total
        for path, p in reference.items():
            g = batch * mean_gradients[path]  # reduction="sum"
            layer = path.split("/")[0]
            if p.ndim == 4:
                p_torch, g_torch, b_torch = (np.transpose(a, (3, 2, 0, 1)) for a in (p, g, buffers[path]))
                p_torch, b_torch = muon_step(p_torch, g_torch, b_torch, 0.24 * fraction)
                reference[path], buffers[path] = to_keras(p_torch), to_keras(b_torch)
            elif layer == "dense":
                reference[path], buffers[path] = sgd_step(p, g, buffers[path], 0.67 * fraction, wd / 0.67)
            elif layer == "whiten_bias":
                rate = 0.053 * max(1 - step / 2, 0)  # param_groups[:1]: over whiten_bias_train_steps
                reference[path], buffers[path] = sgd_step(p, g, buffers[path], rate, wd / 0.053)
            else:
                reference[path], buffers[path] = sgd_step(p, g, buffers[path], 0.053 * fraction, wd / 0.053)
    for v in variables:
        expected = reference[v.path]
        scale = np.abs(expected).max()
        # float32's rounding (measured on an Intel Xeon: 1.2e-7 at most); the filters also allow a rare
        # value of Newton-Schulz one bfloat16 step away (about 4e-4 x rate 0.24)
        bound = FILTER_BOUND if expected.ndim == 4 else 1e-5 * max(scale, 1)
        assert np.abs(v.numpy() - expected).max() <= bound, v.path
    # the filters were renormalised to norm sqrt(out-channels) before each step
    kernel = reference["block1a_conv/kernel"]
    assert np.linalg.norm(kernel) == pytest.approx(kernel.shape[-1] ** 0.5, rel=0.2)


def test_a_deliberate_break_of_each_piece_shows():
    """The step test's bounds are sharp: each break below moves one step's result far past them."""
    p = np.random.default_rng(1).normal(size=(16, 8, 3, 3)).astype(np.float32)
    g = np.random.default_rng(2).normal(size=p.shape).astype(np.float32)
    right, _ = muon_step(p, g, np.zeros_like(p), 0.24)
    unnormalised = p - 0.24 * zeropower_via_newtonschulz5((g + 0.6 * g).reshape(16, -1)).reshape(p.shape)
    assert np.abs(unnormalised - right).max() > 10 * FILTER_BOUND  # the weight normalisation dropped
    five_steps, _ = muon_step(p, g, np.zeros_like(p), 0.24, steps=5)
    assert np.abs(five_steps - right).max() > 5 * FILTER_BOUND  # 5 Newton-Schulz steps (measured 7.5e-3)
    # plain momentum, not Nesterov's (after a first step: the first, from a zero buffer, is the same
    # direction either way, and Newton-Schulz forgets the length)
    buffer = np.random.default_rng(3).normal(size=p.shape).astype(np.float32)
    nesterov, _ = muon_step(p, g, buffer, 0.24)
    plain, _ = muon_step(p, g, buffer, 0.24, nesterov=False)
    assert np.abs(plain - nesterov).max() > 10 * FILTER_BOUND
    bias, grad = np.ones(8, np.float32), np.full(8, 1e-3, np.float32)
    decay = 2e-6 * 2000 / 0.053
    summed, _ = sgd_step(bias, 2000 * grad, np.zeros(8), 0.053, decay)
    mean, _ = sgd_step(bias, grad, np.zeros(8), 0.053, decay)
    assert np.abs(summed - mean).max() > 1e4 * 1e-5  # the mean instead of the sum
    decoupled = bias - 0.053 * (1 + 0.85) * 2000 * grad - 0.053 * decay * bias
    assert np.abs(decoupled - summed).max() > 10 * 1e-5  # decoupled decay instead of PyTorch's


def test_the_muon_optimizer_saves_and_loads_with_its_config(recipe, tmp_path):
    model = build(recipe, 10, seed=0)
    model.compile(optimizer=optimizer(recipe, 25), loss="categorical_crossentropy")
    images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    labels = keras.utils.to_categorical(np.arange(8) % 10, 10)
    model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert isinstance(loaded.optimizer, AirbenchMuon)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    for saved, original in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(original))  # momentum buffers too
