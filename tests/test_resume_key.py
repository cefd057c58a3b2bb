"""The resume key the train stage builds covers every project file it runs: edit one, and training starts over."""

import json
import shutil
import subprocess
import sys

import pytest

from benchmarks.workspace import PROJECT, stage_env
from cifar.core.artifacts import Artifacts
from cifar.core.codegraph import files_run_by
from cifar.training.loop import CODE_FILES, run_key
from tests.helpers import prepare_workspace, training_params

TRAIN_FILES = [path.relative_to(PROJECT).as_posix() for path in files_run_by("stages.train")]


def project_copy(root):
    """The project's code (stages/ and cifar/) copied to `root`, to be edited there."""
    for package in ("stages", "cifar"):
        shutil.copytree(PROJECT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "vendor"))
    return root


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = tmp_path_factory.mktemp("key")
    prepare_workspace(path, precision="float32", train_images=20, test_images=10, epochs=2)
    return path


def test_the_key_covers_every_project_module_the_stage_imports(workspace):
    """Read from the code (every import statement), checked against what a real run loads."""
    log = workspace / "modules.json"
    result = subprocess.run(
        [sys.executable, "-m", "tests.instrumented", "--modules-log", str(log), "stages.train"],
        cwd=workspace,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(log.read_text()))
    assert {"stages/train.py", "cifar/models/seed_cnn.py", "cifar/training/resume.py"} <= loaded
    assert loaded <= {path.relative_to(PROJECT).as_posix() for path in CODE_FILES}


@pytest.mark.parametrize("relative", TRAIN_FILES)
def test_editing_any_file_the_stage_runs_changes_its_key(workspace, tmp_path, relative):
    copy = project_copy(tmp_path / "project")
    settings, recipe, artifacts = *training_params(workspace)[1:], Artifacts(workspace)
    before = run_key(settings, recipe, artifacts, files_run_by("stages.train", copy))
    assert before == run_key(settings, recipe, artifacts)  # the copy is the code the stage runs
    with open(copy / relative, "a") as f:
        f.write("\n# edited\n")
    assert run_key(settings, recipe, artifacts, files_run_by("stages.train", copy)) != before


@pytest.mark.slow
def test_a_run_after_the_code_changed_starts_from_scratch(workspace, tmp_path):
    """Killed after its first checkpoint, then the network's code edited: the rerun must not resume."""
    copy = project_copy(tmp_path / "project")
    work = shutil.copytree(workspace, tmp_path / "work", ignore=shutil.ignore_patterns("modules.json"))
    env = {**stage_env(), "PYTHONPATH": f"{copy}:{PROJECT}"}  # the copied stages, the tests' attack runner

    def train(*module):
        return subprocess.run(
            [sys.executable, "-m", *module], cwd=work, env=env, capture_output=True, text=True, timeout=300
        )

    killed = train("tests.attack", "after-checkpoint", "train")
    assert killed.returncode == -9, killed.stderr[-2000:]
    (checkpoint,) = work.glob(".train_state/*/epoch-0001.keras")
    with open(copy / "cifar/models/seed_cnn.py", "a") as f:
        f.write("\n# edited\n")
    rerun = train("stages.train")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming from" not in rerun.stdout
    assert checkpoint.is_file(), "the old run's state is another key's: this run neither used nor cleared it"
    assert Artifacts(work).model.is_file()
