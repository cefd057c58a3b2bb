"""The git and DVC commands the report runs, in the current repository."""

import subprocess
import sys
from pathlib import Path

from cifar.core.errors import PipelineError


def dvc(*args):
    """Run a dvc command in the current repo; return its stdout (PipelineError on failure)."""
    command = [str(Path(sys.executable).parent / "dvc"), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def revision_exists(rev):
    return (
        subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True).returncode
        == 0
    )


def git_show(rev, path):
    """A file's text at a revision, or None."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def short_hash(rev):
    result = subprocess.run(["git", "rev-parse", "--short", rev], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else rev
