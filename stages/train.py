"""Stage train: fit the model chosen by `train.model`, checkpointed after every epoch.

The tutorial's recipe (`train` section): Adamax at `learning_rate`, decayed as
lr * lr_decay**epoch, categorical cross-entropy, shuffled batches, validated on the
test set each epoch. `train.schedule: warmup_cosine` (for large batches) warms the
rate up linearly for `warmup_epochs`, then decays it along a cosine to zero, step by step.
The fast model's recipe (`fast` section): Nesterov SGD with decoupled weight decay,
warm-up then cosine decay, label smoothing and optionally a moving average of the weights.
Training runs under the tf.distribute strategy of `train.strategy` (stages/distribute.py).
Killed at any moment, the next run resumes from the last completed epoch and
ends with the same weights as an uninterrupted run.
"""

import json
import math
import sys
import time
from pathlib import Path


import keras
import numpy as np
import tensorflow as tf

from stages import distribute, precision, resume
from stages import fast_net  # noqa: F401  registers the fast model's layer, for loading checkpoints
from stages.atomic import atomic_path, write_json
from stages.codegraph import files_run_by
from stages.errors import run_stage
from stages.models import MODEL_FILE, build_model
from stages.params import load_params, training_recipe
from stages.preprocess import PREPARED_DIR
from stages.runtime import configure_tensorflow

LIVE_DIR = Path("reports/train")
# The code that determines the trained weights, part of the resume key: every project file this
# stage runs, read from its imports (so a file cannot be forgotten; tests/test_resume_key.py).
CODE_FILES = files_run_by("stages.train")


def load_prepared(prepared_dir=PREPARED_DIR):
    prepared_dir = Path(prepared_dir)
    arrays = {name: np.load(prepared_dir / f"{name}.npy") for name in ("x_train", "y_train", "x_test", "y_test")}
    classes = json.loads((prepared_dir / "classes.json").read_text())
    return arrays, classes


def run_key(params, prepared_dir, code_files=CODE_FILES):
    """The resume key of a training run: its params, its prepared data and the code it runs."""
    settings = params["train"]
    data_files = sorted(Path(prepared_dir).glob("*.npy"))
    return resume.run_key({"train": settings, "recipe": training_recipe(params)}, data_files, code_files)


def lr_schedule(learning_rate, decay):
    """The tutorial's schedule: INIT_LR * 0.9 ** epoch."""
    return lambda epoch: learning_rate * decay**epoch


def training_batches(x, y, batch_size, seed, first_epoch, epochs):
    """Shuffled batches for epochs first_epoch..epochs-1: uint8 images and one-hot labels.

    Each epoch's order is a stateless shuffle keyed by (seed, epoch), so a run
    resumed at epoch k sees exactly the batches an uninterrupted run would.
    The images stay uint8 in memory; batches are gathered on the fly.
    """
    images, labels = tf.constant(x), tf.constant(y)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(x)), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    return (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_batches)
        .map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
        .prefetch(tf.data.AUTOTUNE)
    )


def warmup_cosine(learning_rate, warmup_steps, total_steps, final_fraction=0.0):
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to `final_fraction` of it at the last step."""
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=final_fraction,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def learning_rate_setup(recipe, steps_per_epoch):
    """(the optimizer's learning rate, callbacks that drive it) for the recipe's schedule.

    The fast recipe always warms up and decays along a cosine; the tutorial's picks with `schedule`.
    """
    if recipe.get("schedule", "warmup_cosine") == "warmup_cosine":
        total = recipe["epochs"] * steps_per_epoch
        warmup = round(recipe["warmup_epochs"] * steps_per_epoch)
        schedule = warmup_cosine(recipe["learning_rate"], warmup, total, recipe.get("final_lr_fraction", 0.0))
        return schedule, [LearningRateLogger()]
    schedule = lr_schedule(recipe["learning_rate"], recipe["lr_decay"])
    return recipe["learning_rate"], [keras.callbacks.LearningRateScheduler(schedule, verbose=1)]


class LearningRateLogger(keras.callbacks.Callback):
    """Logs the rate a step-wise schedule reached at the end of each epoch, as the tutorial's callback does."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(optimizer.learning_rate)


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


def make_optimizer(model_name, recipe, learning_rate):
    """The tutorial's Adamax, or the fast recipe's Nesterov SGD (weight decay, optional weight average)."""
    if model_name != "fast":
        return keras.optimizers.Adamax(learning_rate)
    ema = recipe["ema_momentum"]
    return keras.optimizers.SGD(
        learning_rate,
        momentum=recipe["momentum"],
        nesterov=recipe["nesterov"],
        weight_decay=recipe["weight_decay"] or None,
        use_ema=ema is not None,
        ema_momentum=ema if ema is not None else 0.99,
    )


def compile_model(model, learning_rate, model_name="seed_cnn", recipe=None):
    recipe = recipe or {}
    model.compile(
        optimizer=make_optimizer(model_name, recipe, learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.get("label_smoothing", 0.0)),
        metrics=["accuracy"],
    )


def make_live(history, live_dir=LIVE_DIR):
    """A DVCLive logger that holds the history of epochs done before a resume."""
    from dvclive import Live

    live = Live(dir=str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None)
    for epoch in range(len(next(iter(history.values()), []))):
        for name, values in history.items():
            live.log_metric(_live_name(name), values[epoch])
        live.next_step()
    return live


def _live_name(name):
    from dvclive.utils import standardize_metric_name

    return standardize_metric_name(name, "dvclive.keras")


def train(
    params,
    prepared_dir=PREPARED_DIR,
    model_file=MODEL_FILE,
    state_root=resume.STATE_ROOT,
    live_dir=LIVE_DIR,
    callbacks=(),
):
    """Train (or resume) and write the model; returns the model and its per-epoch history.

    `params`: all sections of params.yaml. Under a multi-worker strategy every worker
    trains and checkpoints; only the chief writes the model and the reports.
    """
    from dvclive.keras import DVCLiveCallback

    settings = params["train"]
    recipe = training_recipe(params)
    model_name = settings["model"]
    arrays, classes = load_prepared(prepared_dir)
    keras.utils.set_random_seed(settings["seed"])
    configure_tensorflow()
    strategy = distribute.make_strategy(settings["strategy"])
    chief = distribute.is_chief(strategy)
    key = run_key(params, prepared_dir)
    state = resume.state_dir(key if chief else f"{key}-{distribute.worker_name(strategy)}", state_root)

    policy = precision.resolve(settings["precision"])
    print(f"precision: {policy} (train.precision: {settings['precision']}; CPU: {precision.describe_cpu()})")
    print(f"strategy: {settings['strategy']} ({type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s))")
    batch_size = recipe["batch_size"]
    epochs = recipe["epochs"]
    steps_per_epoch = math.ceil(len(arrays["y_train"]) / batch_size)
    learning_rate, schedule_callbacks = learning_rate_setup(recipe, steps_per_epoch)

    done, checkpoint, history = resume.latest_checkpoint(state)
    distribute.agree_on_epoch(strategy, done)
    if checkpoint is not None:
        print(f"resuming from {checkpoint} ({done} of {epochs} epochs done)")
        with strategy.scope():
            model = keras.models.load_model(checkpoint)  # the optimizer, its schedule and step come back too
    else:
        with precision.building_with(policy):
            replicas = strategy.num_replicas_in_sync
            model = distribute.build_under(
                strategy,
                lambda: build_model(model_name, len(classes), recipe, arrays["x_train"], settings["seed"], replicas),
            )
        with strategy.scope():
            compile_model(model, learning_rate, model_name, recipe)
        model.summary()

    num_classes = len(classes)
    y_train = keras.utils.to_categorical(arrays["y_train"], num_classes)
    y_test = keras.utils.to_categorical(arrays["y_test"], num_classes)
    checkpointer = resume.EpochCheckpoint(state, history)
    fit_callbacks = [EpochClock(history), *schedule_callbacks, resume.ReseedDropout(settings["seed"]), checkpointer]
    if chief:
        live = make_live(history, live_dir)
        live.log_param("precision", policy)  # what `auto` resolved to on this machine
        live.log_param("cpu", precision.describe_cpu())  # timings of other machines are not comparable
        fit_callbacks.append(DVCLiveCallback(live=live))
    fit_options = dict(
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        initial_epoch=done,
        validation_data=(arrays["x_test"], y_test),
        validation_batch_size=max(batch_size, 256),
        callbacks=[*fit_callbacks, *callbacks],
    )
    if done < epochs:
        batches = training_batches(arrays["x_train"], y_train, batch_size, settings["seed"], done, epochs)
        if distribute.is_multi_worker(strategy):
            distribute.fit_multi_worker(model, strategy, batches, **fit_options)
        else:
            # shuffle=False: training_batches shuffles, reproducibly per epoch
            model.fit(batches, shuffle=False, verbose=1 if sys.stdout.isatty() else 2, **fit_options)
    else:
        # Killed after the last checkpoint: it holds the raw weights, as fit leaves them before its end.
        model.optimizer.finalize_variable_values(model.trainable_variables)
        if chief:
            live.end()
    if chief:
        with atomic_path(model_file) as tmp:
            model.save(tmp)
        write_json(Path(model_file).with_name("classes.json"), classes)  # for predict: the model knows no names
    resume.clear(state)
    return model, checkpointer.history


def main(argv=None):
    train(load_params())


if __name__ == "__main__":
    sys.exit(run_stage(main))
