"""Shared test helpers: tiny prepared and trained workspaces, results recomputed by hand, stages run as
real processes. The scratch copies of the project themselves are benchmarks/workspace.py's."""

import contextlib
import functools
import http.server
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from benchmarks.recipes import TINY
from benchmarks.workspace import PROJECT, run_command, scratch_workspace, stage_env
from cifar.core.artifacts import Artifacts
from stages.preprocess import preprocess
from tests.datagen import write_cifar_archive

TINY_SEED = 7  # train.seed of the tiny workspaces
TRAIN_KEYS = ("model", "precision", "strategy", "seed")


def prepare_workspace(path, *, precision, train_images=100, test_images=40, coloured=True, **train_params):
    """params.yaml, data/raw/dataset (a generated CIFAR archive, as fetch leaves it) and data/prepared/ in `path`.

    `precision` (train.precision) is required: a test that compares numbers between runs
    or devices needs "float32", since `auto` is bfloat16 on CPUs with bfloat16 units, whose
    rounding differences grow quickly over training steps (tests/test_distribute.py).
    `train_params`: keys of the `train` section (model, strategy, seed) and of the chosen model's recipe
    (`seed_cnn` by default), over its tiny one (benchmarks/recipes.py's TINY); every model's section is tiny.
    `coloured`: tests/datagen.py's random_images's (false: noise images).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    archive = path / "cifar.tar.gz"
    write_cifar_archive(
        archive, train_per_batch=max(train_images // 5, 10), test=max(test_images, 10), coloured=coloured
    )
    artifacts = Artifacts(path)
    artifacts.raw_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, artifacts.raw_dataset)
    train = {key: value for key, value in train_params.items() if key in TRAIN_KEYS}
    recipe = {key: value for key, value in train_params.items() if key not in TRAIN_KEYS}
    model = train.get("model", "seed_cnn")
    params = scratch_workspace(
        path,
        fetch={"source": str(archive)},
        preprocess={"max_train_images": train_images, "max_test_images": test_images},
        train={"seed": TINY_SEED, "precision": precision, **train},
        **{name: {**tiny, **(recipe if name == model else {})} for name, tiny in TINY.items()},
    )
    preprocess(params["preprocess"], artifacts, progress=lambda m: None)
    return params


# The one tiny trained model of each kind that tests share (tests/conftest.py: trained_workspace), over
# its TINY recipe: above chance on its 100 test images (measured on an AMD EPYC Zen 5: seed_cnn 0.9,
# airbench94_muon 0.5 in float32 and 0.56 in bfloat16), with mistakes and classes of unequal accuracy, so
# that a stage that mixes up images, labels or classes shows it.
SHARED_TRAINING = {"seed_cnn": {}, "airbench94_muon": {"epochs": 5}}
SHARED_IMAGES = {"train_images": 200, "test_images": 100}


def train_shared_workspace(path, model, precision):
    """A workspace in `path` with `model` trained in `precision` as SHARED_TRAINING says."""
    prepare_workspace(path, precision=precision, model=model, **SHARED_IMAGES, **SHARED_TRAINING[model])
    train_in_workspace(path)
    return path


def project_recipe(name, **changes):
    """Model `name`'s Recipe: params.yaml's section with `changes` over it, checked."""
    from cifar import models
    from cifar.core.params import read_params_file

    params = read_params_file(PROJECT / "params.yaml")
    return models.recipe(name, {name: {**params[name], **changes}})


def tiny_recipe(name, **changes):
    """Model `name`'s Recipe: params.yaml's section with its TINY values and `changes` over it, checked."""
    return project_recipe(name, **{**TINY[name], **changes})


def training_params(path):
    """(the chosen model's module, train settings, its Recipe) from the params.yaml in `path`, validated."""
    from cifar import models
    from cifar.core.params import check_section, read_params_file

    params = read_params_file(Path(path) / "params.yaml")
    settings = check_section(params, "train", models.TRAIN_RULES)
    return models.model(settings["model"]), settings, models.recipe(settings["model"], params)


def keras_probabilities(artifacts, images):
    """The trained model's probabilities of `images`, in float64, by Keras alone (no project loader)."""
    import keras

    return keras.saving.load_model(artifacts.model, compile=False).predict(images, verbose=0).astype(np.float64)


def views_by_hand(batch, level=2):
    """The test-time augmentation views of `level`, built independently of cifar.evaluation.tta: [(weight, images)]."""
    if level == 0:
        return [(1.0, batch)]
    if level == 1:
        return [(0.5, batch), (0.5, np.flip(batch, axis=2))]
    padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    down_right = padded[:, :32, :32]  # content moved one pixel down and right
    up_left = padded[:, 2:, 2:]
    out = []
    for weight, view in ((0.25, batch), (0.125, down_right), (0.125, up_left)):
        out += [(weight, view), (weight, np.flip(view, axis=2))]
    return out


def probabilities_by_hand(model_file, images, level, batch_size=256, float32=False, fraction=1.0):
    """The model's class probabilities, in float64, at test-time augmentation `level` as airbench94
    computes it: the softmax of the logits averaged over the views of `views_by_hand`. The logits
    are the log-probabilities up to a per-image constant, which the softmax cancels.
    `fraction` < 1: selective TTA, as hiverge/cifar10-speedrun's `tta`: those views for the int(n x fraction)
    images whose plain top probability is lowest (ties: the first), the plain probabilities for the others.

    `float32`: computed by the model's float32 copy (the same weights), the reference that numbers a
    model trained in bfloat16 computes are bounded against (tests/bfloat16_bounds.py)."""
    from cifar.network.trained import float32_copy, load_trained_model

    model = load_trained_model(model_file)
    if float32:
        model = float32_copy(model)
    logits = [
        (weight, np.log(model.predict(view, batch_size=batch_size, verbose=0).astype(float)))
        for weight, view in views_by_hand(images, level)
    ]
    average = sum(weight * values for weight, values in logits)
    viewed = np.exp(average) / np.exp(average).sum(axis=1, keepdims=True)
    if fraction >= 1:
        return viewed
    plain = model.predict(images, batch_size=batch_size, verbose=0).astype(float)
    confidence = plain.max(axis=1)
    chosen = sorted(range(len(images)), key=lambda i: (confidence[i], i))[: int(len(images) * fraction)]
    plain[chosen] = viewed[chosen]
    return plain


def ece_by_definition(probabilities, labels, bins=15):
    """Guo et al. (2017): sum over equal-width confidence bins (lo, hi] of |accuracy - confidence| * share."""
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    total = 0.0
    for lo, hi in zip(np.linspace(0, 1, bins + 1)[:-1], np.linspace(0, 1, bins + 1)[1:]):
        members = (confidence > lo) & (confidence <= hi) | ((lo == 0) & (confidence == 0))
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return total


def recomputed_test_probabilities(root, float32=False):
    """(probabilities, labels) of the trained model in workspace `root` on its prepared test set, with its
    TTA level from params.yaml, computed without the evaluate stage; `float32`: by its float32 copy."""
    params = yaml.safe_load((Path(root) / "params.yaml").read_text())
    artifacts = Artifacts(root)
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    level = params["tta"][params["train"]["model"]]
    batch_size, fraction = params["evaluate"]["batch_size"], params["evaluate"]["tta_fraction"]
    return probabilities_by_hand(artifacts.model, x_test, level, batch_size, float32, fraction), y_test


def assert_test_metrics_are_the_models(root, metrics):
    """`metrics`' accuracy and loss are those of the trained model in workspace `root` on its test set, at
    its TTA level, recomputed without the evaluate stage. A model computing in bfloat16 is bounded by its
    float32 copy's (tests/bfloat16_bounds.py). Returns (the recomputed probabilities, the labels, the
    images whose top class is certain: all in float32, the near ties left out in bfloat16)."""
    from cifar.network.trained import computes_in_bfloat16, load_trained_model
    from tests import bfloat16_bounds

    model = yaml.safe_load((Path(root) / "params.yaml").read_text())["train"]["model"]
    if not computes_in_bfloat16(load_trained_model(Artifacts(root).model)):
        probabilities, labels = recomputed_test_probabilities(root)
        assert metrics["accuracy"] == round(float(np.mean(probabilities.argmax(axis=1) == labels)), 6)
        right = probabilities[np.arange(len(labels)), labels]
        assert abs(metrics["loss"] + np.mean(np.log(right))) <= 1e-4  # float32's rounding: measured 2e-6
        return probabilities, labels, np.ones(len(labels), bool)
    probabilities, labels = recomputed_test_probabilities(root, float32=True)
    bfloat16_bounds.assert_accuracy_close(metrics["accuracy"], probabilities, labels, model)
    bfloat16_bounds.assert_loss_close(metrics["loss"], probabilities, labels, model)
    return probabilities, labels, ~bfloat16_bounds.near_ties(probabilities, model)


def train_in_workspace(path, callbacks=()):
    """The train stage's work, in this process, on workspace `path` (every input and output under it)."""
    from cifar.training.loop import train

    model, settings, recipe = training_params(path)
    return train(model, settings, recipe, Artifacts(path), callbacks=callbacks)


def run_stage_process(stage, cwd, check=True, timeout=300, **popen_options):
    return run_command([sys.executable, "-m", f"stages.{stage}"], cwd, stage_env(), check, timeout, **popen_options)


def wait_for(predicate, process, timeout=240, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if process.poll() is not None:
            return predicate()
        time.sleep(interval)
    return False


class LoopbackHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the files of `directory` (`serving_folder`), or `payload` at any path (`serving`) as `mode` says:
    ok; truncate: promises more bytes than it sends, then hangs up; corrupt: the first byte flipped; stall:
    a third of it, then (`stalled` set) nothing until `release` is set: a download in progress. Counts its
    GET `requests`."""

    payload = None
    mode = "ok"
    requests = 0
    stalled = release = None

    def do_GET(self):
        type(self).requests += 1
        if self.payload is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if self.mode in ("truncate", "stall"):
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload[: len(self.payload) // 3])
            self.wfile.flush()
            if self.mode == "stall":
                self.stalled.set()
                self.release.wait(60)
            self.connection.close()
            return
        body = self.payload
        if self.mode == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def loopback_server(handler, name=""):
    """A loopback HTTP server (127.0.0.1) of `handler` in a thread: its URL for `name`, shut down after."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/{name}"
    finally:
        if getattr(handler, "release", None) is not None:
            handler.release.set()
        httpd.shutdown()
        httpd.server_close()


@contextlib.contextmanager
def serving(path, mode="ok"):
    """A loopback server of the file `path`: (its handler class, whose `mode` and `requests` a test sets and
    reads, the file's URL)."""
    fields = {"payload": Path(path).read_bytes(), "mode": mode, "requests": 0}
    fields.update(stalled=threading.Event(), release=threading.Event())
    handler = type("Handler", (LoopbackHandler,), fields)
    with loopback_server(handler, Path(path).name) as url:
        yield handler, url


@contextlib.contextmanager
def serving_folder(folder):
    """A loopback server of the files of `folder`: its base URL."""
    handler = functools.partial(type("Handler", (LoopbackHandler,), {"requests": 0}), directory=str(folder))
    with loopback_server(handler) as url:
        yield url.rstrip("/")


def weights_of(path):
    from cifar.network.trained import load_trained_model

    return load_trained_model(path).get_weights()


def assert_same_weights(a, b):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        np.testing.assert_array_equal(wa, wb)


def fetched(root, archive):
    """Artifacts of `root` with `archive` in place of the fetched dataset."""
    artifacts = Artifacts(root)
    artifacts.raw_dir.mkdir(parents=True)
    archive.rename(artifacts.raw_dataset)
    return artifacts
