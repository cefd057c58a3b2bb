"""train.strategy: MirroredStrategy over two logical CPUs, and two workers on loopback, match one device."""

import json
import shutil
import socket
import subprocess
import sys

import numpy as np
import pytest

from stages import resume
from stages.models import load_trained_model
from tests.conftest import set_params
from tests.helpers import prepare_workspace, stage_env, train_in_workspace

# No random augmentation and synchronised BatchNorm: several devices compute what one does.
FAST = {"epochs": 2, "batch_size": 20, "learning_rate": 0.1, "widths": [8, 16, 16], "flip": False, "translate": 0}


def workspace_copy(source, target, **train):
    shutil.copytree(source, target)
    set_params(target, train=train)
    return target


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """A tiny fast-model workspace, trained on one device (in this process: no second TensorFlow start-up)."""
    path = tmp_path_factory.mktemp("distribute") / "one"
    prepare_workspace(path, train_images=100, test_images=20, model="fast", strategy="one_device")
    set_params(path, fast=FAST)
    pristine = path.with_name("pristine")
    shutil.copytree(path, pristine)
    from stages.params import load_params

    train_in_workspace(path, load_params(path / "params.yaml"))
    return path


def weights(path):
    return load_trained_model(path / "models/model.keras").get_weights()


def history(path):
    return json.loads((path / "reports/train/metrics.json").read_text())


def assert_same_training(path, reference, atol=1e-4):
    """Equal weights and per-epoch metrics, up to rounding (`atol` on weights).

    A bug in splitting the batch or averaging the gradients moves weights by ~0.5 here.
    """
    for ours, theirs in zip(weights(path), weights(reference), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-3, atol=atol)
    for key in ("train", "eval"):
        for name, value in history(reference)[key].items():
            if name == "elapsed_s":
                continue
            assert history(path)[key][name] == pytest.approx(value, rel=10 * atol, abs=atol), f"{key}/{name}"


def test_mirrored_over_two_cpus_matches_one_device(one_device):
    path = workspace_copy(one_device.with_name("pristine"), one_device.with_name("mirrored"), strategy="mirrored")
    result = subprocess.run(
        [sys.executable, "-m", "tests.two_cpus", "stages.train"],
        cwd=path,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy: mirrored (MirroredStrategy, 2 replica(s))" in result.stdout
    # Measured: up to 0.01 apart after these 10 steps, where two worker processes agree to 1e-5;
    # the in-process synchronised BatchNorm rounds differently (cause not isolated).
    assert_same_training(path, one_device, atol=0.02)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(workers):
    """`python -m stages.train` in each workspace, as the workers of one loopback cluster."""
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(len(workers))]}
    processes = []
    for index, path in enumerate(workers):
        env = {**stage_env(), "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "stages.train"],
                cwd=path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    return processes


def test_two_workers_on_loopback_train_together_and_only_the_chief_writes(one_device):
    pristine = one_device.with_name("pristine")
    workers = [workspace_copy(pristine, one_device.with_name(f"worker{i}"), strategy="multi_worker") for i in (0, 1)]
    processes = start_workers(workers)
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    for process, output in zip(processes, outputs):
        assert process.returncode == 0, output[-3000:]
        assert "strategy: multi_worker (CollectiveAllReduceStrategy, 2 replica(s))" in output
    chief, other = workers
    assert (chief / "models/model.keras").is_file() and (chief / "reports/train/metrics.json").is_file()
    assert not (other / "models").exists() and not (other / "reports/train").exists()
    assert not any((other / ".train_state").iterdir()), "the worker's checkpoints are cleared at the end"
    assert_same_training(chief, one_device)


def test_workers_at_different_epochs_refuse_to_resume(one_device):
    from stages.params import load_params, training_recipe
    from stages.train import CODE_FILES

    pristine = one_device.with_name("pristine")
    workers = [workspace_copy(pristine, one_device.with_name(f"split{i}"), strategy="multi_worker") for i in (0, 1)]
    params = load_params(workers[1] / "params.yaml")
    data_files = sorted((workers[1] / "data/prepared").glob("*.npy"))
    key = resume.run_key({"train": params["train"], "recipe": training_recipe(params)}, data_files, CODE_FILES)
    state = workers[1] / ".train_state" / f"{key}-worker-1"
    state.mkdir(parents=True)
    (state / "epoch-0001.keras").write_bytes(b"")  # a checkpoint the chief does not have
    (state / "epoch-0001.history.json").write_text("{}")
    processes = start_workers(workers)
    for process in processes:
        output = process.communicate(timeout=300)[0]
        assert process.returncode == 2, output[-3000:]
        assert "error: workers resume from different epochs" in output
    assert not (workers[0] / "models").exists()
