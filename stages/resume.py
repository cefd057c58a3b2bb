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

import keras

from stages.atomic import atomic_path, write_json

STATE_ROOT = Path(".train_state")
_CHECKPOINT_RE = re.compile(r"^epoch-(\d{4})\.keras$")


def run_key(train_params, data_files, code_files):
    """A hash of everything that determines the trained weights."""
    digest = hashlib.sha256()
    digest.update(json.dumps(train_params, sort_keys=True).encode())
    for path in [*data_files, *code_files]:
        digest.update(Path(path).name.encode())
        with open(path, "rb") as f:
            digest.update(hashlib.file_digest(f, "sha256").digest())
    return digest.hexdigest()[:20]


def state_dir(key, root=STATE_ROOT):
    return Path(root) / key


def latest_checkpoint(directory):
    """(epochs completed, checkpoint path, history) of the newest complete checkpoint, or (0, None, {})."""
    directory = Path(directory)
    found = []
    if directory.is_dir():
        for path in directory.iterdir():
            match = _CHECKPOINT_RE.match(path.name)
            if match and _history_path(path).is_file():
                found.append((int(match[1]), path))
    if not found:
        return 0, None, {}
    epoch, path = max(found)
    return epoch, path, json.loads(_history_path(path).read_text())


def _history_path(checkpoint):
    return checkpoint.with_suffix(".history.json")


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, save model + optimizer state and the history so far, then drop older ones."""

    def __init__(self, directory, history=None):
        super().__init__()
        self.directory = Path(directory)
        self.history = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))
        path = self.directory / f"epoch-{epoch + 1:04d}.keras"
        # History first: a checkpoint only counts once its history exists beside it.
        write_json(_history_path(path), self.history)
        with atomic_path(path) as tmp:
            self.model.save(tmp)
        for older in self.directory.glob("epoch-*"):
            match = _CHECKPOINT_RE.match(older.name) or re.match(r"^epoch-(\d{4})\.history\.json$", older.name)
            if match and int(match[1]) < epoch + 1:
                older.unlink(missing_ok=True)


class ReseedDropout(keras.callbacks.Callback):
    """Set every random-layer seed from (seed, epoch) at each epoch start.

    Keras does not save seed-generator state, so without this a resumed run
    would draw different dropout masks than an uninterrupted one.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        for index, state in enumerate(states):
            derived = int.from_bytes(hashlib.sha256(f"{self.seed}/{epoch}/{index}".encode()).digest()[:4], "little")
            state.assign([derived, 0])


def clear(directory):
    shutil.rmtree(directory, ignore_errors=True)
