"""Scratch workspaces for benchmarks: a params.yaml pointed at a dataset, stages run as processes;
scratch repositories: the project's committed files as a fresh git + DVC repository, run by `dvc`."""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]


def stage_env():
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def scratch_workspace(source, root):
    """params.yaml (the project's, with fetch.source = `source`) in `root`; returns the params."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["fetch"]["source"] = str(Path(source).resolve())
    write_params(root, params)
    return params


def write_params(root, params):
    (Path(root) / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def set_params(root, section, overrides):
    """Update one section of root's params.yaml with `overrides`."""
    params = yaml.safe_load((Path(root) / "params.yaml").read_text())
    params[section] = {**params[section], **overrides}
    write_params(root, params)
    return params


def parse_override(text):
    """A benchmark's `--set` argument: 'fast.epochs=10' -> ('fast', 'epochs', 10)."""
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


def pipeline_stages():
    """dvc.yaml's stages, in its order."""
    return list(yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"])


def scratch_repository(source, root, params=None):
    """The project's committed files in `root`, as a fresh git + DVC repository aimed at `source`;
    `params`: {section: overrides} of params.yaml."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((PROJECT / name).read_bytes())
    scratch_workspace(source, root)
    for section, overrides in (params or {}).items():
        set_params(root, section, overrides)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=root, check=True, env=git_env())


def git_env():
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }


def dvc_command(*args):
    return [str(Path(sys.executable).parent / "dvc"), *args]


def dvc_env():
    """`python` in dvc.yaml's commands must be this interpreter; stages import from the workspace."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
