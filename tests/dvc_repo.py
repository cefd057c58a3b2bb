"""A throwaway git + DVC copy of the project, for running the real `dvc` and `git` commands."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from cifar.core.tensorflow_log import QUIET_MARK
from tests.conftest import PROJECT, set_params

PROJECT_FILES = [
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


def command_env():
    """A user's environment: no TensorFlow logging variable (the stages set their own), this interpreter."""
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", QUIET_MARK)}
    # `python` in dvc.yaml's commands must be this interpreter (the project's virtualenv).
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = ""
    env["DVC_NO_ANALYTICS"] = "1"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@example.com"
    return env


class Repo:
    def __init__(self, path):
        self.path = Path(path)

    def run(self, *args, check=True, timeout=600, env=None):
        """`args` run in the repo; `env`: variables set for this command only."""
        result = subprocess.run(
            list(args),
            cwd=self.path,
            env={**command_env(), **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args, **kwargs):
        return self.run(str(Path(sys.executable).parent / "dvc"), *args, **kwargs)

    def git(self, *args, **kwargs):
        return self.run("git", *args, **kwargs)

    def set_params(self, **sections):
        return set_params(self.path, **sections)

    def commit(self, message):
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)


def make_repo(path, source, **sections):
    """Copy the project into `path`, point fetch at `source`, set params, commit."""
    path = Path(path)
    path.mkdir(parents=True)
    for name in PROJECT_FILES:
        src = PROJECT / name
        dest = path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest)
    repo = Repo(path)
    repo.git("init", "-q", "-b", "main")
    # the fast model's default holds out 2,000 training images for its temperature: on tiny data, a few
    sections = {**sections, "fast": {"calibration_images": 10, **sections.get("fast", {})}}
    repo.set_params(fetch={"source": str(source)}, **sections)
    repo.commit("project")
    return repo
