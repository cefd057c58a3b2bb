"""The train stage's work, in four phases: set up, build or resume, fit, save.

The stage passes the model (its module of cifar/models) and its recipe (that module's `Recipe`, built
from the params.yaml section named like the model). The loop asks the model for everything that
differs between models: `check(recipe, replicas)`, `build`, `optimizer`, `loss`, `batching` and
`callbacks`; of the recipe it reads only what every recipe has (cifar/training/recipe.py: epochs,
batch_size, calibration_images). Nothing here asks which model it is.
Training runs under the tf.distribute strategy of `train.strategy`; every epoch is
checkpointed, and a run killed at any moment resumes from its last completed epoch
and ends with the same weights as an uninterrupted run (cifar/training/resume.py).
Under a multi-worker strategy every worker trains and checkpoints; only the chief
writes the model and the reports.
"""

import contextlib
import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import keras

from cifar.calibration.temperature import calibrated, holdout_split
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import atomic_directory, atomic_path, write_json
from cifar.core.codegraph import files_run_by
from cifar.core.cpu import describe_cpu
from cifar.core.errors import PipelineError
from cifar.core.runtime import configure_tensorflow
from cifar.training import callbacks as cb
from cifar.training import distribute, precision, resume
from cifar.training.batches import Batching, training_batches

VALIDATION_BATCH_SIZE = 256  # the end-of-epoch test-set pass; its results do not depend on it

# The code that determines the trained weights, part of the resume key: every project file the
# train stage runs, read from its imports (so none can be forgotten; tests/test_resume_key.py).
CODE_FILES = files_run_by("stages.train")


def run_key(settings, recipe, artifacts, code_files=CODE_FILES):
    """The resume key of a training run: its params, its prepared data and the code it runs."""
    data_files = sorted(artifacts.prepared_dir.glob("*.npy"))
    return resume.run_key({"train": settings, "recipe": dataclasses.asdict(recipe)}, data_files, code_files)


@dataclass(frozen=True)
class Run:
    """What the phases share: the model and its params, the data, and where and how this process trains."""

    model: object  # the model's module of cifar/models
    settings: dict  # params.yaml's `train` section
    recipe: object  # the model's Recipe
    artifacts: Artifacts
    arrays: dict  # the prepared arrays, less the held-out images
    classes: list
    held_out: dict  # x and y of the training images kept out of training to fit the temperature
    strategy: object
    chief: bool
    policy: str
    state: Path  # this run's checkpoint folder
    batching: Batching
    steps_per_epoch: int


def train(model, settings, recipe, artifacts=Artifacts(), callbacks=()):
    """Train (or resume) `model` (a module of cifar/models) with `recipe` and write it; returns the trained
    Keras model and its history."""
    run = set_up(model, settings, recipe, artifacts)
    network, done, history = build_or_resume(run)
    # DVCLive writes the chief's history into a fresh folder that replaces reports/train once the model is
    # written: a run that fails leaves the last good history in place, whole (docs/guarantees.md)
    with atomic_directory(artifacts.train_reports) if run.chief else contextlib.nullcontext() as reports:
        history = fit(run, network, done, history, callbacks, reports)
        network = save(run, network)
    resume.clear(run.state)  # last: a run killed before this point resumes from its last epoch
    if run.chief:
        print(summary(settings["model"], history))
    return network, history


def summary(model_name, history):
    """The stage's last line: the run's length and its last epoch's figures (reports/train/metrics.json's)."""
    return (
        f"trained {model_name}: {len(history['loss'])} epochs in {history['elapsed_s'][-1]:.1f} s; last epoch: "
        f"train accuracy {history['accuracy'][-1]:.4f} loss {history['loss'][-1]:.4f}, "
        f"test accuracy {history['val_accuracy'][-1]:.4f} loss {history['val_loss'][-1]:.4f}"
    )


def set_up(model, settings, recipe, artifacts):
    """Seeds, TensorFlow's settings, the data, the strategy and precision, and this run's state folder."""
    arrays, classes = artifacts.load_prepared()
    trained_on, kept_out = holdout_split(len(arrays["y_train"]), recipe.calibration_images, settings["seed"])
    held_out = {"x": arrays["x_train"][kept_out], "y": arrays["y_train"][kept_out]}
    arrays = {**arrays, "x_train": arrays["x_train"][trained_on], "y_train": arrays["y_train"][trained_on]}
    keras.utils.set_random_seed(settings["seed"])
    configure_tensorflow()
    strategy = distribute.make_strategy(settings["strategy"])
    model.check(recipe, strategy.num_replicas_in_sync)  # what the model cannot do, before any work
    chief = distribute.is_chief(strategy)
    key = run_key(settings, recipe, artifacts)
    policy = precision.resolve(settings["precision"])
    print(f"precision: {policy} (train.precision: {settings['precision']}; CPU: {describe_cpu()})")
    print(f"strategy: {settings['strategy']} ({distribute.describe(strategy)})")
    batching = model.batching(recipe)
    return Run(
        model=model,
        settings=settings,
        recipe=recipe,
        artifacts=artifacts,
        arrays=arrays,
        classes=classes,
        held_out=held_out,
        strategy=strategy,
        chief=chief,
        policy=policy,
        state=artifacts.train_state / (key if chief else f"{key}-{distribute.worker_name(strategy)}"),
        batching=batching,
        steps_per_epoch=epoch_steps(len(arrays["y_train"]), recipe.batch_size, batching, settings["model"]),
    )


def epoch_steps(images, batch_size, batching, section):
    """Steps per epoch: every batch, or only the full ones (then at least one is needed). `section`: the
    recipe's section of params.yaml, for the error."""
    if not batching.drop_last_batch:
        return math.ceil(images / batch_size)
    if images < batch_size:
        raise PipelineError(
            f"params.yaml: {section}.batch_size is {batch_size}, more than the {images} training images, and "
            f"{section}.drop_last_batch is true: no full batch; allowed: a batch_size of at most {images}"
        )
    return images // batch_size


def build_or_resume(run):
    """(model, epochs done, history so far): from the last checkpoint of this run, or built and compiled afresh."""
    done, checkpoint, history = resume.latest_checkpoint(run.state)
    distribute.agree_on_epoch(run.strategy, done)
    if checkpoint is not None:
        print(f"resuming from {checkpoint} ({done} of {run.recipe.epochs} epochs done)")
        with run.strategy.scope():
            return keras.models.load_model(checkpoint), done, history  # optimizer, schedule and step too
    replicas = run.strategy.num_replicas_in_sync
    with precision.building_with(run.policy):
        network = distribute.build_under(
            run.strategy,
            lambda: run.model.build(
                run.recipe, len(run.classes), run.arrays["x_train"], run.settings["seed"], replicas
            ),
        )
    with run.strategy.scope():
        compile_model(network, run.model, run.recipe, run.steps_per_epoch)
    network.summary()
    return network, 0, history


def compile_model(network, model, recipe, steps_per_epoch):
    """`network` compiled with its model's optimizer and loss for `recipe`, accuracy as the metric."""
    network.compile(optimizer=model.optimizer(recipe, steps_per_epoch), loss=model.loss(recipe), metrics=["accuracy"])


def fit(run, network, done, history, extra_callbacks=(), reports=None):
    """Train the epochs not done yet, checkpointing each; returns the whole history. `reports`: the folder
    for DVCLive's history (the chief's; None on other workers)."""
    num_classes = len(run.classes)
    y_train = keras.utils.to_categorical(run.arrays["y_train"], num_classes)
    y_test = keras.utils.to_categorical(run.arrays["y_test"], num_classes)
    checkpoint = cb.EpochCheckpoint(run.state, history)
    callbacks = [
        cb.EpochClock(history),  # first: the callbacks after it record its elapsed_s
        cb.LearningRateLogger(),
        cb.ReseedRandomLayers(run.settings["seed"]),
        # before the checkpoint: lookahead's last pull of an epoch must be in what it saves
        *run.model.callbacks(run.recipe, run.steps_per_epoch),
        checkpoint,
    ]
    live = None  # DVCLive: the chief's history, params and resolved settings
    if reports is not None:
        resolved = {"precision": run.policy, "strategy": distribute.describe(run.strategy)}
        resolved["cpu"] = describe_cpu()  # timings from other machines are not comparable
        live = cb.dvclive_logger(history, reports, resolved)
        callbacks.append(live)
    epochs = run.recipe.epochs
    if done == epochs:
        # Killed after the last checkpoint: it holds the raw weights, as fit leaves them before its end.
        network.optimizer.finalize_variable_values(network.trainable_variables)
        if live is not None:
            live.live.end()
        return checkpoint.history
    options = dict(
        steps_per_epoch=run.steps_per_epoch,
        epochs=epochs,
        initial_epoch=done,
        validation_data=(run.arrays["x_test"], y_test),
        # Not the training batch: a large one leaves the CPU's caches (measured at widths 64/256/256 in
        # bfloat16, Intel Xeon AMX: 10,000 test images in 10.3 s at batch 2,000, 5.2 s at 256 or 500).
        validation_batch_size=VALIDATION_BATCH_SIZE,
        # the test-set pass after every epoch, or only after the last (the history then has the test
        # figures of the last epoch alone; the pass costs about 5% of an airbench epoch)
        validation_freq=1 if run.recipe.test_every_epoch else epochs,
        callbacks=[*callbacks, *extra_callbacks],
    )
    batches = training_batches(
        run.arrays["x_train"], y_train, run.recipe.batch_size, run.settings["seed"], done, epochs, run.batching
    )
    if distribute.is_multi_worker(run.strategy):
        distribute.fit_multi_worker(network, run.strategy, batches, **options)
    else:
        # shuffle=False: training_batches shuffles, reproducibly per epoch
        network.fit(batches, shuffle=False, verbose=1 if sys.stdout.isatty() else 2, **options)
    return checkpoint.history


def save(run, network):
    """The chief writes the trained network, with its temperature when images were held out for one, its
    class names and how its pictures were fitted (for predict: the network knows neither).
    Returns the network written."""
    if run.chief and len(run.held_out["y"]):
        network, _ = calibrated(network, run.held_out["x"], run.held_out["y"])
    if run.chief:
        with atomic_path(run.artifacts.model) as tmp:
            network.save(tmp)
        write_json(run.artifacts.model_classes, run.classes)
        write_json(run.artifacts.model_input, run.artifacts.load_input())  # predict fits pictures the same way
    return network
