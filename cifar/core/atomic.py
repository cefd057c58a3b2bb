"""Write outputs atomically: to a temporary file beside the target, then rename.

A crash, a kill or a full disk leaves either the old file or the new one, never
a half-written file under the real name.
"""

import contextlib
import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from cifar.core.errors import PipelineError


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path in the target's directory; rename it over `path` on success.

    The temporary name keeps the target's suffix, since some writers
    (`model.save`, `savefig`) choose their format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{path.name}.", f".tmp{path.suffix}"
    # A writer killed before its rename leaves its temporary file; the next write of the
    # same output removes it (one stage writes an output at a time: DVC locks the workspace).
    for stale in path.parent.glob(f"{glob.escape(prefix)}*{glob.escape(suffix)}"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise PipelineError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_json(path, data):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path, array):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)


def save_figure(path, fig):
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)


@contextlib.contextmanager
def atomic_directory(path):
    """Yield a temporary folder beside `path`; on success it replaces `path` whole (the old one goes first).

    A crash leaves the old folder or none under the real name, never a half-written one; the
    temporary folder of a killed writer is removed by the next write of the same output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.tmp-"
    for stale in path.parent.glob(f"{glob.escape(prefix)}*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=path.parent))
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except OSError as err:
        raise PipelineError(f"cannot write {path}: {err.strerror or err}") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
