"""Scratch copies of the project, for the benchmarks and the tests alike:

- a workspace: a directory with a params.yaml, whose stages run as processes (`run_stage`);
- a repository: the pipeline's files as a fresh git repository with DVC, run by the real `dvc` and `git`
  commands (`scratch_repository`, `Repo`), in the environment a user's shell gives them (`command_env`).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cifar.core.artifacts import Artifacts
from cifar.core.tensorflow_log import QUIET_MARK

PROJECT = Path(__file__).resolve().parents[1]

# What `dvc repro` needs of the project, copied from the working tree (edits not yet committed included)
PIPELINE_FILES = [
    "stages",
    "cifar",
    "data/sources",
    "dvc.yaml",
    "params.yaml",
    ".dvc/config",
    ".dvc/.gitignore",
    ".dvcignore",
    ".gitignore",
]


def stage_env():
    """This environment, with the project importable: `python -m stages.<name>` from any directory."""
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def command_env():
    """A user's shell: this interpreter first on PATH (`python` in dvc.yaml's commands must be the
    project's virtualenv), no TensorFlow logging variable (the stages set their own), a git identity."""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", QUIET_MARK)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ""
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "scratch"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "scratch@localhost"
    return env


def set_params(root, **sections):
    """Update sections of the params.yaml in directory `root`: set_params(root, train={"seed": 1}).
    Returns the whole params."""
    params_file = Path(root) / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    for section, values in sections.items():
        params[section] = {**params[section], **values}
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def scratch_workspace(root, **sections):
    """The project's params.yaml in directory `root`, `sections` set in it (as set_params); returns the params."""
    shutil.copyfile(PROJECT / "params.yaml", Path(root) / "params.yaml")
    return set_params(root, **sections)


def run_command(command, cwd, env, check=True, timeout=600, **options):
    """`command` run with its output captured; with `check`, a failure raises with both streams."""
    result = subprocess.run(
        [str(arg) for arg in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, **options
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(result.args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


class Repo:
    """A scratch repository: its commands run in it, in `command_env()`."""

    def __init__(self, path):
        self.path = Path(path)

    def run(self, *args, check=True, timeout=600, env=None):
        """`args` run in the repo; `env`: variables set for this command only."""
        return run_command(args, self.path, {**command_env(), **(env or {})}, check, timeout)

    def dvc(self, *args, **kwargs):
        return self.run(*dvc_command(*args), **kwargs)

    def git(self, *args, **kwargs):
        return self.run("git", *args, **kwargs)

    def set_params(self, **sections):
        return set_params(self.path, **sections)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)


def scratch_repository(root, source, **sections):
    """The pipeline's files in `root` (a new directory) as a git repository on branch main, fetch aimed
    at `source`, `sections` set in params.yaml, all committed. Returns its Repo."""
    root = Path(root)
    root.mkdir(parents=True)
    for name in PIPELINE_FILES:
        if (PROJECT / name).is_dir():
            shutil.copytree(PROJECT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PROJECT / name, root / name)
    repo = Repo(root)
    repo.git("init", "-q", "-b", "main")
    repo.set_params(fetch={"source": str(Path(source).resolve())}, **sections)
    repo.commit("project")
    return repo


def parse_override(text):
    """A benchmark's `--set` argument: 'airbench94_muon.epochs=7' -> ('airbench94_muon', 'epochs', 7)."""
    key, _, value = text.partition("=")
    section, _, name = key.partition(".")
    if not (section and name and _):
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected section.key=value")
    return section, name, yaml.safe_load(value)


# Linux keeps ru_maxrss across fork and exec: a command started from this process (which may hold
# TensorFlow and a model, a GB or more) would report at least this process's size as its peak. So a
# small Python process in between starts the command, and reports its wall time and its own peak.
_MEASURED = """
import os, subprocess, sys, time
start = time.perf_counter()
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""
# ru_maxrss is in kilobytes on Linux, in bytes on macOS
_MAXRSS_PER_MB = 1024 * 1024 if sys.platform == "darwin" else 1024


def timed(command, cwd, env=None, show_output=False):
    """Wall seconds of a subprocess, its peak RSS in MB (its own, from wait4), and its stdout."""
    with (
        tempfile.TemporaryDirectory() as scratch,
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        measured = Path(scratch) / "measured"
        process = subprocess.run(
            [sys.executable, "-c", _MEASURED, str(measured), *map(str, command)],
            cwd=cwd,
            env=env,
            stdout=None if show_output else out,
            stderr=None if show_output else err,
        )
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{stdout}\n{stderr}")
        wall, maxrss = measured.read_text().split()
    return float(wall), int(maxrss) / _MAXRSS_PER_MB, stdout


def run_stage(name, root, show_output=False):
    """Run `python -m stages.<name>` in root; returns (wall seconds, peak RSS MB)."""
    wall, peak, _ = timed([sys.executable, "-m", f"stages.{name}"], root, stage_env(), show_output)
    return wall, peak


def epoch_seconds(root):
    """Wall seconds of each training epoch, validation included, from the logged elapsed_s."""
    rows = (Artifacts(root).history_dir / "train/elapsed_s.tsv").read_text().split("\n")[1:]
    elapsed = [float(line.split("\t")[-1]) for line in rows if line]
    return [round(b - a, 1) for a, b in zip([0.0, *elapsed], elapsed)]


def pipeline_stages():
    """dvc.yaml's stages, in its order."""
    return list(yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"])


def dvc_command(*args):
    return [str(Path(sys.executable).parent / "dvc"), *args]
