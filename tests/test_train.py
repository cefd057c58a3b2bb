import dataclasses
import shutil
from types import SimpleNamespace

import keras
import numpy as np
import pytest

from cifar.core.artifacts import Artifacts
from cifar.models.seed_cnn import build as seed_cnn
from cifar.models.seed_cnn import exponential
from cifar.training import resume
from cifar.training.batches import Batching, training_batches
from cifar.training.loop import run_key, train
from cifar.training.recipe import TrainingRecipe
from cifar.training.schedules import warmup_cosine
from tests import summaries
from tests.helpers import (
    assert_same_weights,
    keras_probabilities,
    prepare_workspace,
    train_in_workspace,
    training_params,
    weights_of,
)


def test_seed_cnn_is_the_tutorials_network():
    model = seed_cnn()
    assert model.count_params() == 1_084_234
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 1_084_234
    kinds = [type(layer).__name__ for layer in model.layers[2:]]
    assert kinds == [
        "Conv2D",
        "LeakyReLU",
        "Conv2D",
        "LeakyReLU",
        "MaxPooling2D",
        "Dropout",
        "Conv2D",
        "LeakyReLU",
        "Conv2D",
        "LeakyReLU",
        "MaxPooling2D",
        "Dropout",
        "Flatten",
        "Dense",
        "LeakyReLU",
        "Dropout",
        "Dense",
        "LeakyReLU",
        "Activation",
    ]
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [16, 32, 32, 64]


def test_model_normalises_raw_pixels_like_the_tutorial():
    model = seed_cnn()
    pixels = np.array([[[[0, 51, 255]]]], dtype=np.uint8)
    normalized = model.get_layer("normalize")(pixels)
    np.testing.assert_allclose(np.asarray(normalized), pixels / 255 - 0.5, atol=1e-6)


def test_lr_schedule_is_the_tutorials():
    schedule = exponential(0.005, 0.9)
    assert [round(schedule(e), 10) for e in range(3)] == [0.005, 0.0045, 0.00405]


def test_warmup_cosine_rises_linearly_then_decays_to_zero():
    schedule = warmup_cosine(0.01, warmup_steps=10, total_steps=110)
    rates = [float(schedule(step)) for step in (0, 5, 10, 60, 110)]
    np.testing.assert_allclose(rates, [0.0, 0.005, 0.01, 0.005, 0.0], atol=1e-7)


def test_warmup_cosine_rate_is_logged_each_epoch(tmp_path, monkeypatch):
    prepare_workspace(
        tmp_path, precision="auto", epochs=2, schedule="warmup_cosine", warmup_epochs=1, learning_rate=0.01
    )
    _, history = train_in_workspace(tmp_path)
    # 100 images at batch 16: 7 steps an epoch; after epoch 1 the warm-up has just peaked, after 2 it is at 0.
    np.testing.assert_allclose(history["learning_rate"], [0.01, 0.0], atol=1e-7)


def test_training_batches_cover_each_epoch_once_in_a_seeded_order():
    x = np.arange(10, dtype=np.uint8).reshape(10, 1, 1, 1) * np.ones((1, 32, 32, 3), np.uint8)
    y = keras.utils.to_categorical(np.arange(10) % 3, 3)
    batches = [b[0][:, 0, 0, 0].numpy().tolist() for b in training_batches(x, y, 4, seed=1, first_epoch=0, epochs=2)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    first, second = sum(batches[:3], []), sum(batches[3:], [])
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second  # reshuffled each epoch
    resumed = [b[0][:, 0, 0, 0].numpy().tolist() for b in training_batches(x, y, 4, seed=1, first_epoch=1, epochs=2)]
    assert resumed == batches[3:]


def test_training_batches_start_no_autotuning_thread():
    # tf.data's autotuning thread sleeps up to 60 s between rounds, and fit's end waited for it to wake
    # (20-60 s after the last epoch of a 3-8 epoch run on the whole data, measured; about 3 s without it).
    x, y = np.zeros((8, 32, 32, 3), np.uint8), np.eye(2, dtype=np.float32)[np.arange(8) % 2]
    assert training_batches(x, y, 4, seed=0, first_epoch=0, epochs=1).options().autotune.enabled is False


def test_changed_params_or_data_never_resume_from_other_state(tmp_path):
    prepare_workspace(tmp_path, precision="float32", epochs=2)
    _, settings, recipe = training_params(tmp_path)
    artifacts = Artifacts(tmp_path)
    key = run_key(settings, recipe, artifacts)
    assert key == run_key(dict(settings), dataclasses.replace(recipe), artifacts)
    assert key != run_key(settings, dataclasses.replace(recipe, learning_rate=0.001), artifacts)
    assert key != run_key(settings, dataclasses.replace(recipe, epochs=3), artifacts)
    assert key != run_key({**settings, "seed": 1}, recipe, artifacts)
    images = artifacts.prepared_array("x_train")
    np.save(images, np.load(images)[:-1])
    assert key != run_key(settings, recipe, artifacts)


def without_clock(history):
    return {name: values for name, values in history.items() if name != "elapsed_s"}


@pytest.mark.parametrize("schedule", ["exponential", "warmup_cosine"])
def test_in_process_crash_and_resume_matches_and_is_deterministic(tmp_path, schedule, capsys):
    crashed = tmp_path / "crashed"
    prepare_workspace(crashed, precision="float32", epochs=2, schedule=schedule, warmup_epochs=1)
    fresh = shutil.copytree(crashed, tmp_path / "fresh")

    class Crash(Exception):
        pass

    class CrashAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Crash

    # an earlier run's history, with a metric this run does not log: kept whole by the failed run, gone after
    reports = Artifacts(crashed).train_reports
    earlier = {"metrics.json": "{}", "plots/metrics/train/retired_metric.tsv": "step\tretired_metric\n0\t1\n"}
    for name, text in earlier.items():
        (reports / name).parent.mkdir(parents=True, exist_ok=True)
        (reports / name).write_text(text)
    with pytest.raises(Crash):
        train_in_workspace(crashed, callbacks=[CrashAfterFirstEpoch()])
    done, _, history = resume.latest_checkpoint(next(Artifacts(crashed).train_state.iterdir()))
    assert done == 1 and len(history["loss"]) == 1
    assert {p.relative_to(reports).as_posix(): p.read_text() for p in reports.rglob("*") if p.is_file()} == earlier
    _, resumed_history = train_in_workspace(crashed)
    summaries.check_train(capsys.readouterr().out.splitlines(), "seed_cnn", Artifacts(crashed))
    _, fresh_history = train_in_workspace(fresh)
    for path in reports.rglob("*"):  # the resumed run's history is the fresh run's, file for file
        fresh_path = Artifacts(fresh).train_reports / path.relative_to(reports)
        assert fresh_path.exists(), f"{path} is not the fresh run's"
        if path.suffix == ".tsv" and "elapsed_s" not in path.name:
            assert path.read_text() == fresh_path.read_text()
    assert without_clock(resumed_history) == without_clock(fresh_history)
    elapsed = resumed_history["elapsed_s"]
    assert len(elapsed) == 2 and 0 < elapsed[0] < elapsed[1]  # the clock went on from the checkpoint
    assert_same_weights(weights_of(Artifacts(crashed).model), weights_of(Artifacts(fresh).model))


def test_checkpoint_without_history_is_ignored(tmp_path):
    (tmp_path / "epoch-0002.keras").write_bytes(b"half written")
    assert resume.latest_checkpoint(tmp_path) == (0, None, {})


def test_the_loop_asks_the_model_and_reads_of_the_recipe_only_what_every_recipe_has(tmp_path):
    """A model whose recipe is a bare TrainingRecipe trains, holds images out and saves: any other key the
    loop read would be an AttributeError. Each part of the model is asked for, with the recipe itself."""
    prepare_workspace(tmp_path, precision="float32")
    _, settings, _ = training_params(tmp_path)
    recipe = TrainingRecipe(epochs=1, batch_size=16, calibration_images=5, test_every_epoch=True)
    asked = []

    def part(name, value):
        def answer(given, *args):
            assert given is recipe
            asked.append(name)
            return value(*args)

        return answer

    model = SimpleNamespace(
        check=part("check", lambda replicas: None),
        build=part("build", lambda num_classes, images, seed, replicas: seed_cnn(None, num_classes)),
        optimizer=part("optimizer", lambda steps: keras.optimizers.SGD(0.01)),
        loss=part("loss", lambda: keras.losses.CategoricalCrossentropy()),
        batching=part("batching", lambda: Batching(drop_last_batch=True)),
        callbacks=part("callbacks", lambda steps: []),
    )
    network, history = train(model, settings, recipe, Artifacts(tmp_path))
    assert sorted(asked) == ["batching", "build", "callbacks", "check", "loss", "optimizer"]
    assert len(history["loss"]) == 1 and network.name == "seed_cnn"
    # the model's batching: 95 training images left after 5 held out, batch 16, the last partial batch dropped
    assert network.optimizer.iterations.numpy() == 95 // 16


@pytest.mark.parametrize("every_epoch", [True, False])
def test_the_test_set_is_classified_after_every_epoch_or_the_last_only(tmp_path, every_epoch):
    """test_every_epoch false: the history has the last epoch's test figures alone, None before it in the
    checkpoints' history and no row in DVCLive's; a run killed after epoch 1 resumes to the same history."""
    prepare_workspace(tmp_path, precision="float32", epochs=3, test_every_epoch=every_epoch)

    class Crash(Exception):
        pass

    class CrashAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Crash

    with pytest.raises(Crash):
        train_in_workspace(tmp_path, callbacks=[CrashAfterFirstEpoch()])
    _, history = train_in_workspace(tmp_path)
    artifacts = Artifacts(tmp_path)
    x_test, y_test = np.load(artifacts.prepared_dir / "x_test.npy"), np.load(artifacts.prepared_dir / "y_test.npy")
    last = float(np.mean(keras_probabilities(artifacts, x_test).argmax(axis=1) == y_test))
    assert history["val_accuracy"][-1] == pytest.approx(last, abs=1e-6)
    assert all(len(values) == 3 for values in history.values())
    tested = [epoch for epoch, value in enumerate(history["val_accuracy"]) if value is not None]
    assert tested == ([0, 1, 2] if every_epoch else [2])
    assert not (artifacts.history_dir / "eval").exists()  # the test set named so, not DVCLive's eval/
    rows = (artifacts.history_dir / "test/accuracy.tsv").read_text().splitlines()[1:]
    assert [int(row.split("\t")[0]) for row in rows] == tested
    assert float(rows[-1].split("\t")[1]) == pytest.approx(last, abs=1e-6)
