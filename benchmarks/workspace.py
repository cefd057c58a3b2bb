"""Scratch workspaces for benchmarks: a params.yaml pointed at a dataset, stages run as processes."""

import os
import subprocess
import sys
import tempfile
import time
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


def timed(command, cwd, env=None, show_output=False):
    """Wall seconds of a subprocess, its peak RSS in MB (its own, from wait4), and its stdout."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=None if show_output else out, stderr=None if show_output else err
        )
        _, status, usage = os.wait4(process.pid, 0)  # not process.wait(): wait4 also gives its rusage
        wall = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{stdout}\n{stderr}")
    return wall, usage.ru_maxrss / 1024, stdout


def run_stage(name, root, show_output=False):
    """Run `python -m stages.<name>` in root; returns (wall seconds, peak RSS MB)."""
    wall, peak, _ = timed([sys.executable, "-m", f"stages.{name}"], root, stage_env(), show_output)
    return wall, peak
