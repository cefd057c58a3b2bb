"""The train stage's work, in four phases: set up, build or resume, fit, save.

The stage passes the model's definition (its module of cifar/models: `build`, `optimizer` and
`callbacks`) and its recipe (the params.yaml section named like the model, checked); nothing here
asks which model it is. What the loop itself reads of a recipe is RECIPE_RULES' keys and the
optional keys of `batching` and `compile_model`.
Training runs under the tf.distribute strategy of `train.strategy`; every epoch is
checkpointed, and a run killed at any moment resumes from its last completed epoch
and ends with the same weights as an uninterrupted run (cifar/training/resume.py).
Under a multi-worker strategy every worker trains and checkpoints; only the chief
writes the model and the reports.
"""

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import keras

from cifar.calibration.temperature import calibrated, holdout_split
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import atomic_path, write_json
from cifar.core.codegraph import files_run_by
from cifar.core.cpu import describe_cpu
from cifar.core.errors import PipelineError
from cifar.core.params import Rule, non_negative_int, positive_int, positive_number
from cifar.core.runtime import configure_tensorflow
from cifar.training import callbacks as cb
from cifar.training import (
    distribute,
    precision,
    resume,
    schedules,  # noqa: F401  registers schedules.Triangle, which checkpoints hold
)
from cifar.training.batches import training_batches

# The keys every model's recipe has (each model's RECIPE starts with these rules): the loop reads
# epochs, batch_size and calibration_images; each model's optimizer reads learning_rate and warmup_epochs.
RECIPE_RULES = {
    "epochs": positive_int(),
    "batch_size": positive_int(),
    "learning_rate": positive_number(),
    "warmup_epochs": Rule((int, float), "a number of epochs from 0 to 100", minimum=0, maximum=100),
    # training images held out of training to fit the temperature (cifar/calibration); 0 = off
    "calibration_images": non_negative_int("an integer >= 0 (0 = no temperature scaling)"),
}

VALIDATION_BATCH_SIZE = 256  # the end-of-epoch test-set pass; its results do not depend on it

# The code that determines the trained weights, part of the resume key: every project file the
# train stage runs, read from its imports (so none can be forgotten; tests/test_resume_key.py).
CODE_FILES = files_run_by("stages.train")


def run_key(settings, recipe, artifacts, code_files=CODE_FILES):
    """The resume key of a training run: its params, its prepared data and the code it runs."""
    data_files = sorted(artifacts.prepared_dir.glob("*.npy"))
    return resume.run_key({"train": settings, "recipe": recipe}, data_files, code_files)


@dataclass
class Run:
    """What the phases share: the params, the data, and where and how this process trains."""

    definition: object  # the model's module of cifar/models
    settings: dict
    recipe: dict
    artifacts: Artifacts
    arrays: dict
    classes: list
    strategy: object
    chief: bool
    policy: str
    state: Path  # this run's checkpoint folder
    steps_per_epoch: int
    alternating_flip: bool
    drop_last_batch: bool
    held_out: dict  # x and y of the training images kept out of training to fit the temperature


def train(definition, settings, recipe, artifacts=Artifacts(), callbacks=()):
    """Train (or resume) the model of `definition` with `recipe` and write it; returns the model and its history."""
    run = set_up(definition, settings, recipe, artifacts)
    model, done, history = build_or_resume(run)
    history = fit(run, model, done, history, callbacks)
    return save(run, model), history


def batching(recipe):
    """(alternating_flip, drop_last_batch): the fast model's `flip: alternating` and `drop_last_batch`
    (airbench's), done by the training batches; a recipe without the keys (the tutorial's) has neither."""
    return recipe.get("flip") == "alternating", recipe.get("drop_last_batch", False)


def set_up(definition, settings, recipe, artifacts):
    """Seeds, TensorFlow's settings, the data, the strategy and precision, and this run's state folder."""
    arrays, classes = artifacts.load_prepared()
    trained_on, kept_out = holdout_split(len(arrays["y_train"]), recipe["calibration_images"], settings["seed"])
    held_out = {"x": arrays["x_train"][kept_out], "y": arrays["y_train"][kept_out]}
    arrays = {**arrays, "x_train": arrays["x_train"][trained_on], "y_train": arrays["y_train"][trained_on]}
    keras.utils.set_random_seed(settings["seed"])
    configure_tensorflow()
    strategy = distribute.make_strategy(settings["strategy"])
    if recipe.get("optimizer") == "muon" and strategy.num_replicas_in_sync > 1:
        # Measured: over two replicas it trains other weights than one device does (0.2-1.0 apart after
        # 10 steps of the tiny test model, where the SGD recipe agrees to 2e-4), not yet explained.
        raise PipelineError(
            f"params.yaml: fast.optimizer muon trains on one replica only, and train.strategy "
            f"{settings['strategy']} gives {strategy.num_replicas_in_sync}; allowed: train.strategy one_device, "
            "or fast.optimizer sgd"
        )
    chief = distribute.is_chief(strategy)
    key = run_key(settings, recipe, artifacts)
    state = artifacts.train_state / (key if chief else f"{key}-{distribute.worker_name(strategy)}")
    policy = precision.resolve(settings["precision"])
    print(f"precision: {policy} (train.precision: {settings['precision']}; CPU: {describe_cpu()})")
    print(f"strategy: {settings['strategy']} ({distribute.describe(strategy)})")
    alternating_flip, drop_last_batch = batching(recipe)
    name = settings["model"]
    steps_per_epoch = epoch_steps(len(arrays["y_train"]), recipe["batch_size"], drop_last_batch, name)
    return Run(
        definition,
        settings,
        recipe,
        artifacts,
        arrays,
        classes,
        strategy,
        chief,
        policy,
        state,
        steps_per_epoch,
        alternating_flip,
        drop_last_batch,
        held_out,
    )


def epoch_steps(images, batch_size, drop_last_batch, model):
    """Steps per epoch: every batch, or only the full ones (then at least one is needed)."""
    if not drop_last_batch:
        return math.ceil(images / batch_size)
    if images < batch_size:
        raise PipelineError(
            f"params.yaml: {model}.batch_size is {batch_size}, more than the {images} training images, and "
            f"{model}.drop_last_batch is true: no full batch; allowed: a batch_size of at most {images}"
        )
    return images // batch_size


def build_or_resume(run):
    """(model, epochs done, history so far): from the last checkpoint of this run, or built and compiled afresh."""
    done, checkpoint, history = resume.latest_checkpoint(run.state)
    distribute.agree_on_epoch(run.strategy, done)
    if checkpoint is not None:
        print(f"resuming from {checkpoint} ({done} of {run.recipe['epochs']} epochs done)")
        with run.strategy.scope():
            return keras.models.load_model(checkpoint), done, history  # optimizer, schedule and step too
    replicas = run.strategy.num_replicas_in_sync
    with precision.building_with(run.policy):
        model = distribute.build_under(
            run.strategy,
            lambda: run.definition.build(
                len(run.classes), run.recipe, run.arrays["x_train"], run.settings["seed"], replicas
            ),
        )
    with run.strategy.scope():
        compile_model(model, run.definition, run.recipe, run.steps_per_epoch)
    model.summary()
    return model, 0, history


def compile_model(model, definition, recipe, steps_per_epoch):
    """The optimizer of the model's definition, cross-entropy with the recipe's `label_smoothing` (the
    fast model's; none without the key), accuracy as the metric."""
    model.compile(
        optimizer=definition.optimizer(recipe, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=recipe.get("label_smoothing", 0.0)),
        metrics=["accuracy"],
    )


def fit(run, model, done, history, extra_callbacks=()):
    """Train the epochs not done yet, checkpointing each; returns the whole history."""
    num_classes = len(run.classes)
    y_train = keras.utils.to_categorical(run.arrays["y_train"], num_classes)
    y_test = keras.utils.to_categorical(run.arrays["y_test"], num_classes)
    checkpoint = cb.EpochCheckpoint(run.state, history)
    callbacks = [
        cb.EpochClock(history),  # first: the callbacks after it record its elapsed_s
        cb.LearningRateLogger(),
        cb.ReseedRandomLayers(run.settings["seed"]),
        # before the checkpoint: lookahead's last pull of an epoch must be in what it saves
        *run.definition.callbacks(run.recipe, run.steps_per_epoch),
        checkpoint,
    ]
    if run.chief:
        resolved = {"precision": run.policy, "strategy": distribute.describe(run.strategy)}
        resolved["cpu"] = describe_cpu()  # timings from other machines are not comparable
        callbacks.append(cb.dvclive_logger(history, run.artifacts.train_reports, resolved))
    epochs, batch_size = run.recipe["epochs"], run.recipe["batch_size"]
    if done == epochs:
        # Killed after the last checkpoint: it holds the raw weights, as fit leaves them before its end.
        model.optimizer.finalize_variable_values(model.trainable_variables)
        if run.chief:
            callbacks[-1].live.end()
        return checkpoint.history
    options = dict(
        steps_per_epoch=run.steps_per_epoch,
        epochs=epochs,
        initial_epoch=done,
        validation_data=(run.arrays["x_test"], y_test),
        # Not the training batch: a large one leaves the CPU's caches (measured at widths 64/256/256 in
        # bfloat16, Intel Xeon AMX: 10,000 test images in 10.3 s at batch 2,000, 5.2 s at 256 or 500).
        validation_batch_size=VALIDATION_BATCH_SIZE,
        callbacks=[*callbacks, *extra_callbacks],
    )
    batches = training_batches(
        run.arrays["x_train"],
        y_train,
        batch_size,
        run.settings["seed"],
        done,
        epochs,
        run.alternating_flip,
        run.drop_last_batch,
    )
    if distribute.is_multi_worker(run.strategy):
        distribute.fit_multi_worker(model, run.strategy, batches, **options)
    else:
        # shuffle=False: training_batches shuffles, reproducibly per epoch
        model.fit(batches, shuffle=False, verbose=1 if sys.stdout.isatty() else 2, **options)
    return checkpoint.history


def save(run, model):
    """The chief writes the model, with its temperature when images were held out for one, its class
    names and how its pictures were fitted (for predict: the model knows neither); the state goes.
    Returns the model written."""
    if run.chief and len(run.held_out["y"]):
        model, _ = calibrated(model, run.held_out["x"], run.held_out["y"])
    if run.chief:
        with atomic_path(run.artifacts.model) as tmp:
            model.save(tmp)
        write_json(run.artifacts.model_classes, run.classes)
        write_json(run.artifacts.model_input, run.artifacts.load_input())  # predict fits pictures the same way
    resume.clear(run.state)
    return model
