"""Crash-safe training state: a checkpoint after every epoch, resumed only by an identical run.

Keras' BackupAndRestore writes the weights and the epoch number as two files,
one after the other, so a kill between the two resumes from the wrong epoch,
and it saves no optimizer state. Here each checkpoint is one `.keras` file
(weights, optimizer state, epoch in its name, history beside it in the same
atomic rename), and the state lives in a directory keyed by a hash of the train
params, the data and the training code: DVC never deletes it (it is no stage
output) and a run with anything changed cannot warm-start from it.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^epoch-(\d{4})\.keras$")


def run_key(train_params, data_files, code_files):
    """A hash of everything that determines the trained weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps(train_params, sort_keys=True).encode())
    for path in [*data_files, *code_files]:
        digest.update(f"{Path(path).parent.name}/{Path(path).name}".encode())  # data/params.py, models/...
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:20]


def checkpoint_path(directory, epochs_done):
    return Path(directory) / f"epoch-{epochs_done:04d}.keras"


def history_path(checkpoint):
    """The per-epoch history written beside a checkpoint; a checkpoint counts only once it exists."""
    return Path(checkpoint).with_suffix(".history.json")


def latest_checkpoint(directory):
    """(epochs completed, checkpoint path, history) of the newest complete checkpoint, or (0, None, {})."""
    directory = Path(directory)
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = CHECKPOINT_RE.match(path.name)
            if match and history_path(path).is_file():
                found.append((int(match[1]), path))
    if not found:
        return 0, None, {}
    epoch, path = max(found)
    return epoch, path, json.loads(history_path(path).read_text())


def clear(directory):
    shutil.rmtree(directory, ignore_errors=True)
