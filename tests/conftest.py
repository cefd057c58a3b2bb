"""The suite's fixtures. Helpers live in tests/helpers.py, and the scratch workspaces and repositories the
tests share with the benchmarks in benchmarks/workspace.py."""

import os
import shutil

import pytest

import cifar  # noqa: F401  (sets TensorFlow's environment before any test imports it)
from benchmarks.workspace import scratch_workspace


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A scratch directory holding a copy of params.yaml, made the current directory."""
    scratch_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    return tmp_path


@pytest.fixture(scope="session")
def trained_workspace(tmp_path_factory):
    """`trained_workspace(model, precision)`: a private copy of a workspace whose model was trained once
    for the whole run (tests/helpers.py: SHARED_TRAINING), by whichever pytest-xdist worker asked first.

    Training is the suite's costliest fixture; every test needing a trained tiny model of a kind
    shares this one. Each call returns a fresh copy, so a test may run stages that write into it."""
    from filelock import FileLock

    from tests.helpers import train_shared_workspace

    base = tmp_path_factory.getbasetemp()
    # pytest-xdist gives each worker its own basetemp inside the run's: the models live in the run's
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-once"
    root.mkdir(exist_ok=True)

    def copy_of(model, precision="float32"):
        original = root / f"{model}-{precision}"
        with FileLock(f"{original}.lock"):
            if not (original / ".trained").exists():
                shutil.rmtree(original, ignore_errors=True)
                train_shared_workspace(original, model, precision)
                (original / ".trained").touch()
        copy = tmp_path_factory.mktemp(f"{model}-{precision}")
        shutil.copytree(original, copy, dirs_exist_ok=True)
        (copy / ".trained").unlink()
        return copy

    return copy_of
