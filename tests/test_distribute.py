"""train.strategy: MirroredStrategy over two logical CPUs, and two workers on loopback, train what one device trains.

airbench94 in float32 agrees with one device to rounding (1e-4 allowed; measured 4e-6). In bfloat16 each
model is compared after one training step, in units of bfloat16's own error (see BF16_TOLERANCE).
airbench94_muon (the fast default) is followed step by step, in both precisions (see MUON_TOLERANCE).
"""

import json
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.workspace import set_params, stage_env
from cifar.core.artifacts import Artifacts
from cifar.network.trained import load_trained_model
from tests.helpers import prepare_workspace, train_in_workspace

# No random augmentation and synchronised BatchNorm: several devices compute what one does. airbench94
# (airbench94_muon's Muon has its own tests, below), its triangle peaking at its default 2.3 epochs.
AIRBENCH94 = {"epochs": 2, "batch_size": 20, "learning_rate": 0.1, "widths": [8, 16, 16], "warmup_epochs": 2.3,
              "flip": "none", "translate": 0, "lookahead_every": 2, "lookahead_start_epoch": 0,
              "whiten_bias_epochs": 1, "calibration_images": 0}  # fmt: skip


def workspace_copy(source, target, **train):
    shutil.copytree(source, target)
    set_params(target, train=train)
    return target


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """A tiny airbench94 workspace, trained on one device (in this process: no second TensorFlow start-up)."""
    path = tmp_path_factory.mktemp("distribute") / "one"
    options = dict(model="airbench94", strategy="one_device", precision="float32")
    prepare_workspace(path, train_images=100, test_images=20, **options, **AIRBENCH94)
    pristine = path.with_name("pristine")
    shutil.copytree(path, pristine)
    train_in_workspace(path)
    return path


def weights(path):
    return load_trained_model(Artifacts(path).model).get_weights()


def history(path):
    return json.loads((Artifacts(path).train_reports / "metrics.json").read_text())


def assert_same_training(path, reference, atol=1e-3):
    """Equal weights and per-epoch metrics, up to rounding (`atol` on weights).

    A bug in splitting the batch or averaging the gradients moves weights by ~0.5 here.
    Measured on an AMD EPYC: MirroredStrategy and two workers 2.0e-4 from one device at most (in a
    few near-zero weights; 3.7e-6 before the whitening acted on standardised images, whose
    near-singular directions, eps 5e-4 on 100 images, amplify the replicas' rounding), one device
    on 1 thread instead of 2 1.1e-6.
    """
    for ours, theirs in zip(weights(path), weights(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=atol)
    for key in ("train", "test"):
        for name, value in history(reference)[key].items():
            if name == "elapsed_s":
                continue
            assert history(path)[key][name] == pytest.approx(value, rel=10 * atol, abs=atol), f"{key}/{name}"


def run_replicas(path, *options, env=None):
    """The train stage in `path` through tests/instrumented.py (logical CPUs, no dropout, all-reduce log)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.instrumented", *options, "stages.train"],
        cwd=path,
        env=env or stage_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process, timeout=300):
    output = process.communicate(timeout=timeout)[0]
    assert process.returncode == 0, output[-3000:]
    return output


def test_mirrored_over_two_cpus_matches_one_device(one_device):
    path = workspace_copy(one_device.with_name("pristine"), one_device.with_name("mirrored"), strategy="mirrored")
    output = finish(run_replicas(path, "--cpus", "2"))
    assert "strategy: mirrored (MirroredStrategy, 2 replica(s))" in output
    assert_same_training(path, one_device)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(workers, *options):
    """The train stage in each workspace, as the workers of one loopback cluster."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(len(workers))]}
    processes = []
    for index, path in enumerate(workers):
        task = {"cluster": cluster, "task": {"type": "worker", "index": index}}
        processes.append(run_replicas(path, *options, env={**stage_env(), "TF_CONFIG": json.dumps(task)}))
    return processes


def test_two_workers_on_loopback_train_together_and_only_the_chief_writes(one_device):
    pristine = one_device.with_name("pristine")
    workers = [workspace_copy(pristine, one_device.with_name(f"worker{i}"), strategy="multi_worker") for i in (0, 1)]
    for output in [finish(process) for process in start_workers(workers)]:
        assert "strategy: multi_worker (CollectiveAllReduceStrategy, 2 replica(s))" in output
    chief, other = workers
    assert Artifacts(chief).model.is_file() and (Artifacts(chief).train_reports / "metrics.json").is_file()
    assert not (other / "models").exists() and not Artifacts(other).train_reports.exists()
    assert not any(Artifacts(other).train_state.iterdir()), "the worker's checkpoints are cleared at the end"
    assert_same_training(chief, one_device)


def test_workers_at_different_epochs_refuse_to_resume(one_device):
    from cifar.core.artifacts import Artifacts
    from cifar.training.loop import run_key
    from tests.helpers import training_params

    pristine = one_device.with_name("pristine")
    workers = [workspace_copy(pristine, one_device.with_name(f"split{i}"), strategy="multi_worker") for i in (0, 1)]
    key = run_key(*training_params(workers[1])[1:], Artifacts(workers[1]))
    state = workers[1] / ".train_state" / f"{key}-worker-1"
    state.mkdir(parents=True)
    (state / "epoch-0001.keras").write_bytes(b"")  # a checkpoint the chief does not have
    (state / "epoch-0001.history.json").write_text("{}")
    for process in start_workers(workers):
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 2, output[-3000:]
        assert "error: workers resume from different epochs" in output
    assert not (workers[0] / "models").exists()


# bfloat16 keeps 8 significant bits, so a sum taken in another order (other threads, a batch split
# between replicas) rounds differently, and over steps at a high learning rate the differences grow
# chaotically: after the float32 tests' 10 steps above, in bfloat16, one device on 1 thread instead
# of 2 already moves weights by 0.28 and MirroredStrategy by 0.26 (measured). So these tests train
# one step, where a difference still measures precision, and express it in units of bfloat16's own
# error on the same run: rms(bfloat16 one device - float32 one device), over all weights.
# Measured on an AMD EPYC (bfloat16 emulated), rms difference from bfloat16 one device in that unit:
#   one device, 1 thread instead of 2 ............ airbench94 0.03  seed_cnn 0.16
#   MirroredStrategy over two logical CPUs ........ airbench94 0.10  seed_cnn 0.12
#   the same, BatchNorm's synchronised sums all-reduced in bfloat16 (injected on purpose): airbench94 0.52
# Gradients all-reduced in bfloat16 (injected) change one step by 0.004 of the unit: the gradients
# of bfloat16 layers already hold bfloat16 values. The all-reduce log catches that loss instead.
BF16_TOLERANCE = 0.3
BF16_RECIPES = {  # each model's recipe keys, over its tiny one
    "seed_cnn": {"epochs": 1, "batch_size": 20, "learning_rate": 0.005},
    "airbench94": {**AIRBENCH94, "epochs": 1, "warmup_epochs": 0},  # no warm-up: its first step has rate 0
}


def float_weights(path):
    return np.concatenate([w.ravel() for w in weights(path) if w.dtype.kind == "f"]).astype(np.float64)


def rms(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module", params=sorted(BF16_RECIPES))
def bfloat16_one_device(request, tmp_path_factory):
    """(pristine bfloat16 workspace, its one-device weights, bfloat16's error unit) for one step of each model.

    Dropout is off in every run of these comparisons (tests/instrumented.py says why).
    """
    model = request.param
    root = tmp_path_factory.mktemp(f"bf16-{model}")
    pristine = root / "pristine"
    options = dict(model=model, strategy="one_device", precision="mixed_bfloat16")
    prepare_workspace(pristine, train_images=20, test_images=20, **options, **BF16_RECIPES[model])
    trained = {}
    with pytest.MonkeyPatch.context() as patch:
        import keras

        patch.setattr(keras.layers.Dropout, "call", lambda self, inputs, training=False: inputs)
        for precision in ("float32", "mixed_bfloat16"):
            path = workspace_copy(pristine, root / precision, precision=precision)
            train_in_workspace(path)
            trained[precision] = float_weights(path)
    unit = rms(trained["mixed_bfloat16"], trained["float32"])
    assert unit > 0, "bfloat16 should round differently from float32"
    return pristine, trained["mixed_bfloat16"], unit


def assert_bfloat16_matches(path, one_device_weights, unit, all_reduce_log):
    difference = rms(float_weights(path), one_device_weights)
    print(f"rms from one device: {difference / unit:.3f} of bfloat16's own error ({unit:.3g})")
    assert difference <= BF16_TOLERANCE * unit, f"rms {difference:.3g} from one device; bfloat16's own error {unit:.3g}"
    assert_all_reduced_in_float32(all_reduce_log)


def assert_all_reduced_in_float32(all_reduce_log):
    """Every floating-point value tests/instrumented.py saw all-reduced (gradients, BatchNorm sums) was float32."""
    floats = [dtype for dtype in json.loads(all_reduce_log.read_text()) if dtype.startswith(("float", "bfloat"))]
    assert floats and set(floats) == {"float32"}, f"{all_reduce_log}: all-reduced in {sorted(set(floats))}"


def test_bfloat16_mirrored_over_two_cpus_matches_one_device(bfloat16_one_device):
    pristine, one_device_weights, unit = bfloat16_one_device
    path = workspace_copy(pristine, pristine.with_name("mirrored"), strategy="mirrored")
    log = path / "all_reduce.json"
    output = finish(run_replicas(path, "--cpus", "2", "--no-dropout", "--all-reduce-log", str(log)))
    assert "precision: mixed_bfloat16" in output and "MirroredStrategy, 2 replica(s)" in output
    assert_bfloat16_matches(path, one_device_weights, unit, log)


def test_bfloat16_two_workers_match_one_device(bfloat16_one_device):
    pristine, one_device_weights, unit = bfloat16_one_device
    workers = [workspace_copy(pristine, pristine.with_name(f"worker{i}"), strategy="multi_worker") for i in (0, 1)]
    processes = start_workers(workers, "--no-dropout", "--all-reduce-log", "all_reduce.json")  # in each workspace
    for output in [finish(process) for process in processes]:
        assert "precision: mixed_bfloat16" in output and "CollectiveAllReduceStrategy, 2 replica(s)" in output
    assert_bfloat16_matches(workers[0], one_device_weights, unit, workers[0] / "all_reduce.json")


# airbench94_muon (Muon, the fast default) over two replicas, step by step.
#
# Muon's update has a fixed size whatever the gradient's: Newton-Schulz sets every singular value of a filter
# update to about 1. So where SGD turns a relative rounding difference in a gradient into a weight difference
# of that relative size times a small gradient, Muon turns it into one of that size times its rate (0.24).
# Two roundings make it large: airbench's Newton-Schulz rounds every op to bfloat16 (a 1e-7 difference in a
# gradient flips some roundings by 2^-8), and on the tiny test images of class colours (tests/datagen.py) the
# last conv layers' gradients nearly cancel, so that scaling one device's initial weights by 1 + 1e-7 changes
# block3b's first gradient by 2% (measured). That, not the distribution, made the tiny model's replicas train
# weights 0.2-1.0 apart from one device's after 10 steps: one device perturbed by 1e-7 moved as far. These
# tests train on noise images (well-conditioned gradients) and bound the replicas' distance from one device by
# what merely changing the thread count or bfloat16's rounding does to one device, measured in the same run.
MUON = {"epochs": 2, "batch_size": 20, "widths": [8, 16, 16], "flip": "alternating", "translate": 0,
        "brightness": 0, "contrast": 0, "whiten_bias_epochs": 1, "calibration_images": 0}  # fmt: skip
MUON_STEPS = 10  # 100 images in batches of 20, two epochs; the whitening bias frozen from step 6 on
MUON_COMPARED_STEPS = (1, MUON_STEPS)
# The bound, in units of max(rms distance of one device on 1 thread instead of 2, of one device without
# bfloat16's rounding) from one device, at the same step, over the weights or over the momentum buffers.
# Measured on an AMD EPYC Zen 5 (bfloat16 emulated), in units, MirroredStrategy / two workers:
#                          weights, step 1   step 10    momentum, step 1   step 10
#   float32 policy           0.10 / 0.10   0.51 / 0.52      1.38 / 1.39   (passes)
#   mixed_bfloat16           0.08 / 0.10   0.72 / 0.79      0.01 / 0.02   0.92 / 0.92
# (float32's first momentum, the gradient itself, differs by float32 summation order alone: 1.7e-8.)
# A distribution bug is an update of another direction: orthogonalising each replica's gradient before
# the all-reduce puts the weights 15 units away after step 1.
MUON_TOLERANCE = 2.0


def read_steps(path):
    with np.load(path / "steps.npz") as record:
        return dict(record)


def state(record, step, part, replica=0):
    """The model's float weights ("weights") or the optimizer's momentum buffers ("momentum") at `step`,
    as one float64 vector (tests/instrumented.py's StepRecorder keys: step|variable path|replica)."""
    keys = sorted(key for key in record if key.startswith(f"{step}|") and key.endswith(f"|{replica}"))
    if part == "momentum":
        keys = [key for key in keys if key.split("|")[1].endswith("_momentum")]
    else:
        keys = [key for key in keys if not key.split("|")[1].startswith("airbench_muon/")]
    assert keys, f"nothing recorded at step {step}"
    return np.concatenate([record[key].ravel() for key in keys if record[key].dtype.kind == "f"]).astype(np.float64)


@pytest.fixture(scope="module", params=["float32", "mixed_bfloat16"])
def muon_runs(request, tmp_path_factory):
    """Every step of the tiny Muon recipe on noise images, recorded (each a dict of StepRecorder's arrays):
    one device, one device on one thread, one device without bfloat16's rounding (float32 policy: Newton-
    Schulz in float32; mixed_bfloat16: the float32 policy), MirroredStrategy over two logical CPUs, and
    each of two workers on loopback. Also "paths": each run's workspace."""
    precision = request.param
    root = tmp_path_factory.mktemp(f"muon-{precision}")
    pristine = root / "pristine"
    options = dict(model="airbench94_muon", strategy="one_device", precision=precision)
    prepare_workspace(pristine, train_images=100, test_images=20, coloured=False, **options, **MUON)
    record = ("--record-steps", "steps.npz", "--all-reduce-log", "all_reduce.json")
    rounding = ["--newton-schulz-float32"] if precision == "float32" else []
    paths = {}
    for name, train, options, env in [
        ("one", {}, [], {}),
        ("threads", {}, [], {"TF_NUM_INTRAOP_THREADS": "1"}),
        ("rounding", {} if rounding else {"precision": "float32"}, rounding, {}),
        ("mirrored", {"strategy": "mirrored"}, ["--cpus", "2"], {}),
    ]:
        paths[name] = workspace_copy(pristine, root / name, **train)
        finish(run_replicas(paths[name], *options, *record, env={**stage_env(), **env}))
    workers = [workspace_copy(pristine, root / f"worker{i}", strategy="multi_worker") for i in (0, 1)]
    for process in start_workers(workers, *record):
        finish(process)
    paths["worker0"], paths["worker1"] = workers
    runs = {name: read_steps(path) for name, path in paths.items()}
    return {**runs, "paths": paths, "precision": precision}


REPLICAS = {"mirrored": ("mirrored", 0), "workers": ("worker0", 0)}  # (run, replica) of each kind


def muon_distance(runs, name, step, part, replica=0):
    return rms(state(runs[name], step, part, replica), state(runs["one"], step, part))


@pytest.mark.parametrize("kind", sorted(REPLICAS))
@pytest.mark.parametrize("part", ["weights", "momentum"])
def test_muon_over_two_replicas_takes_one_devices_steps(muon_runs, kind, part):
    name, replica = REPLICAS[kind]
    for step in MUON_COMPARED_STEPS:
        unit = max(muon_distance(muon_runs, "threads", step, part), muon_distance(muon_runs, "rounding", step, part))
        distance = muon_distance(muon_runs, name, step, part, replica)
        print(f"{muon_runs['precision']} {kind} {part} step {step}: {distance / unit:.2f} units ({unit:.3g})")
        assert unit > 0 and distance <= MUON_TOLERANCE * unit, f"step {step}: rms {distance:.3g}, unit {unit:.3g}"


def test_muon_replicas_hold_the_same_state_after_every_step(muon_runs):
    """Every variable of the model and of the optimizer, bit for bit: both devices of MirroredStrategy, and
    the two workers."""
    mirrored, worker0, worker1 = muon_runs["mirrored"], muon_runs["worker0"], muon_runs["worker1"]
    assert sorted(worker0) == sorted(worker1)
    for key, value in worker0.items():
        np.testing.assert_array_equal(value, worker1[key], err_msg=f"workers differ in {key}")
    second = [key for key in mirrored if key.endswith("|1")]
    assert len(second) == len([key for key in mirrored if key.endswith("|0")]) > 0
    for key in second:
        np.testing.assert_array_equal(mirrored[key], mirrored[key[:-1] + "0"], err_msg=f"replicas differ in {key}")
    for name in ("mirrored", "worker0"):
        assert_all_reduced_in_float32(muon_runs["paths"][name] / "all_reduce.json")


@pytest.mark.parametrize("kind", sorted(REPLICAS))
def test_muon_schedule_and_whitening_bias_follow_one_device(muon_runs, kind):
    """The step count and the rate of every step are one device's; the whitening bias learns over the
    first epoch and then stays as it is, on every replica as on one device."""
    name, replica = REPLICAS[kind]
    runs = {"one": (muon_runs["one"], 0), kind: (muon_runs[name], replica)}
    steps = range(1, MUON_STEPS + 1)
    for label, (record, index) in runs.items():
        assert [int(record[f"{step}|airbench_muon/iteration|{index}"]) for step in steps] == list(steps), label
        # the linear decay from 1 to 0 over the run: the rate the optimizer gives the step after each
        expected = [1 - step / MUON_STEPS for step in steps]
        assert [float(record[f"{step}|rate"]) for step in steps] == pytest.approx(expected, abs=1e-6), label
        bias = [record[f"{step}|whiten_bias/bias|{index}"] for step in steps]
        momentum = [record[f"{step}|airbench_muon/whiten_bias_bias_momentum|{index}"] for step in steps]
        first_epoch = MUON_STEPS // MUON["epochs"]
        for step in range(first_epoch, MUON_STEPS):  # frozen: from the second epoch, unchanged, momentum too
            np.testing.assert_array_equal(bias[step], bias[first_epoch - 1], err_msg=f"{label} step {step + 1}")
            np.testing.assert_array_equal(momentum[step], momentum[first_epoch - 1])
        assert all(np.any(bias[step] != bias[step - 1]) for step in range(1, first_epoch)), f"{label}: not learning"


def test_two_workers_killed_mid_run_resume_to_the_same_weights(muon_runs):
    """Both workers SIGKILLed in the second epoch (after its second step), then started again: they resume
    from their epoch-1 checkpoints and end with the weights of the uninterrupted two-worker run, bit for bit."""
    pristine = muon_runs["paths"]["one"].with_name("pristine")
    workers = [workspace_copy(pristine, pristine.with_name(f"killed{i}"), strategy="multi_worker") for i in (0, 1)]
    for process in start_workers(workers, "--kill-after-step", str(MUON_STEPS // 2 + 2)):
        process.communicate(timeout=300)
        assert process.returncode == -signal.SIGKILL
    assert [path.name for path in sorted(workers[0].glob(".train_state/*/epoch-*.keras"))] == ["epoch-0001.keras"]
    assert not Artifacts(workers[0]).model.exists()
    for output in [finish(process) for process in start_workers(workers)]:
        assert "resuming from" in output
    uninterrupted = weights(muon_runs["paths"]["worker0"])
    for ours, theirs in zip(weights(workers[0]), uninterrupted, strict=True):
        np.testing.assert_array_equal(ours, theirs)
