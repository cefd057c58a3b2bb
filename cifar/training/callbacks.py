"""The callbacks of a training run: checkpoints, reseeding, the clock, the learning rate, DVCLive."""

import hashlib
import re
import time

import keras

from cifar.core.atomic import atomic_path, write_json
from cifar.training import resume


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, save model + optimizer state and the history so far, then drop older ones."""

    def __init__(self, directory, history=None):
        super().__init__()
        self.directory = directory
        self.history = {k: list(v) for k, v in (history or {}).items()}

    def on_epoch_end(self, epoch, logs=None):
        # one entry per epoch under every name; None where an epoch has no value (the test-set figures
        # of an epoch without a test pass: train.test_every_epoch false)
        done = len(next(iter(self.history.values()), []))
        for name in {**self.history, **(logs or {})}:
            value = (logs or {}).get(name)
            self.history.setdefault(name, [None] * done).append(None if value is None else float(value))
        path = resume.checkpoint_path(self.directory, epoch + 1)
        # History first: a checkpoint only counts once its history exists beside it.
        write_json(resume.history_path(path), self.history)
        with atomic_path(path) as tmp:
            self.model.save(tmp)
        for older in self.directory.glob("epoch-*"):
            match = resume.CHECKPOINT_RE.match(older.name) or re.match(r"^epoch-(\d{4})\.history\.json$", older.name)
            if match and int(match[1]) < epoch + 1:
                older.unlink(missing_ok=True)


class ReseedRandomLayers(keras.callbacks.Callback):
    """Set the seed of every random layer (dropout, flips, shifts) from (seed, epoch) at each epoch start.

    Keras does not save seed-generator state, so without this a resumed run would draw
    other dropout masks and augmentations than an uninterrupted one.
    """

    def __init__(self, seed):
        super().__init__()
        self.seed = seed

    def on_epoch_begin(self, epoch, logs=None):
        states = [v for v in self.model.non_trainable_variables if v.path.endswith("seed_generator_state")]
        for index, state in enumerate(states):
            derived = int.from_bytes(hashlib.sha256(f"{self.seed}/{epoch}/{index}".encode()).digest()[:4], "little")
            state.assign([derived, 0])


class EpochClock(keras.callbacks.Callback):
    """Adds `elapsed_s`, wall seconds of training (validation included) so far, to each epoch's logs.

    Continues from the resumed history, so time to an accuracy reads straight off the history.
    Must come before the callbacks that record the logs.
    """

    def __init__(self, history):
        super().__init__()
        past = history.get("elapsed_s", [])
        self.elapsed = past[-1] if past else 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.elapsed += time.perf_counter() - self.started
        if logs is not None:
            logs["elapsed_s"] = round(self.elapsed, 3)


class LearningRateLogger(keras.callbacks.Callback):
    """Logs the rate at the end of each epoch (a step-wise schedule's, or the one set for the epoch), as the
    tutorial's LearningRateScheduler does."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            # convert_to_numpy, as Keras's LearningRateScheduler does: under a distribution strategy the
            # rate is a MirroredVariable, which float() refuses
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def live_metric_name(name):
    """DVCLive's name of a Keras history key: `val_accuracy` (the per-epoch pass over the test set, which
    Keras calls validation) as test/accuracy, the rest as train/<name>; DVCLive's own Keras callback would
    say eval/, which a reader takes for a validation split."""
    return f"test/{name[len('val_') :]}" if name.startswith("val_") else f"train/{name}"


def dvclive_logger(history, directory, params):
    """DVCLive's Keras callback, its logger holding the history of epochs done before a resume and `params`."""
    from dvclive import Live
    from dvclive.keras import DVCLiveCallback

    class TestSetNamedCallback(DVCLiveCallback):
        def on_epoch_end(self, epoch, logs=None):
            for name, value in (logs or {}).items():
                self.live.log_metric(live_metric_name(name), value)
            self.live.next_step()

    live = Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
    for epoch in range(len(next(iter(history.values()), []))):
        for name, values in history.items():
            if values[epoch] is not None:  # an epoch without a test pass
                live.log_metric(live_metric_name(name), values[epoch])
        live.next_step()
    live.log_params(params)
    return TestSetNamedCallback(live=live)
