"""train.strategy: MirroredStrategy over two logical CPUs, and two workers on loopback, train what one device trains.

In float32 they agree with one device to rounding (1e-4 allowed; measured 4e-6). In bfloat16 they are
compared after one training step, in units of bfloat16's own error (see BF16_TOLERANCE).
"""

import json
import shutil
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
# (airbench94_muon is refused over several replicas, below), its triangle peaking at its default 2.3 epochs.
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
    for key in ("train", "eval"):
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


def test_airbench94_muon_over_several_replicas_is_refused_in_one_line(one_device):
    pristine, target = one_device.with_name("pristine"), one_device.with_name("muon")
    path = workspace_copy(pristine, target, strategy="mirrored", model="airbench94_muon")  # its tiny recipe
    process = run_replicas(path, "--cpus", "2")
    output = process.communicate(timeout=300)[0]
    assert process.returncode != 0
    assert (
        "error: params.yaml: train.model airbench94_muon trains on one replica only, and train.strategy gives 2; "
        "allowed: train.strategy one_device, or train.model airbench94"
    ) in output.splitlines()
    assert "Traceback" not in output and not Artifacts(path).model.exists()


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
    floats = [dtype for dtype in json.loads(all_reduce_log.read_text()) if dtype.startswith(("float", "bfloat"))]
    assert floats and set(floats) == {"float32"}, f"all-reduced in {sorted(set(floats))}"


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
