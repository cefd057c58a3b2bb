"""Attacks on the real stages: kills at chosen points, a full disk, broken image folders.

Each kill runs the real stage in its own process and SIGKILLs it at an exact point
(tests/attack.py); the rerun must finish and give exactly what an uninterrupted run gives.
"""

import hashlib
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.workspace import PROJECT, scratch_workspace, set_params, stage_env
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.data.datasets import read_dataset
from tests.datagen import encode_image, write_cifar_archive, write_image_folder_archive
from tests.helpers import assert_same_weights, prepare_workspace, run_stage_process, serving, weights_of

EPOCHS = 3


def run_attacked(point, stage, cwd):
    """The stage in a process that kills itself at `point`; asserts that it was killed."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.attack", point, stage],
        cwd=cwd,
        env={**stage_env(), "PYTHONPATH": str(PROJECT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, f"not killed ({result.returncode}):\n{result.stderr[-2000:]}"


def train_and_evaluate(workspace):
    run_stage_process("train", workspace)
    run_stage_process("evaluate", workspace)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted train + evaluate run of the tiny recipe."""
    workspace = tmp_path_factory.mktemp("reference")
    prepare_workspace(workspace, precision="float32", epochs=EPOCHS)
    train_and_evaluate(workspace)
    return workspace


def assert_same_results(workspace, reference):
    assert Artifacts(workspace).metrics.read_bytes() == Artifacts(reference).metrics.read_bytes()
    assert_same_weights(weights_of(Artifacts(workspace).model), weights_of(Artifacts(reference).model))


@pytest.mark.slow
def test_two_clean_runs_give_byte_identical_metrics_and_equal_weights(tmp_path, reference):
    prepare_workspace(tmp_path, precision="float32", epochs=EPOCHS)
    train_and_evaluate(tmp_path)
    assert_same_results(tmp_path, reference)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["mid-epoch", "after-checkpoint", "final-rename"])
def test_train_killed_then_rerun_equals_an_uninterrupted_run(tmp_path, reference, point):
    prepare_workspace(tmp_path, precision="float32", epochs=EPOCHS)
    run_attacked(point, "train", tmp_path)
    checkpoints = sorted(path.name for path in tmp_path.glob(".train_state/*/epoch-*.keras"))
    if point == "final-rename":  # the whole model written, killed before its rename: not under the real name
        assert list((tmp_path / "models").glob(".model.keras.*.tmp.keras"))
        assert not Artifacts(tmp_path).model.exists()
        assert checkpoints == [f"epoch-{EPOCHS:04d}.keras"]
    else:  # killed in the second epoch, or as the first checkpoint landed: that checkpoint is the state
        assert checkpoints == ["epoch-0001.keras"]
    result = run_stage_process("train", tmp_path)
    assert "resuming from" in result.stdout
    if point == "mid-epoch":  # equal weights give equal metrics (the clean-runs test); evaluate once
        run_stage_process("evaluate", tmp_path)
        assert_same_results(tmp_path, reference)
    else:
        assert_same_weights(weights_of(Artifacts(tmp_path).model), weights_of(Artifacts(reference).model))
    for tsv in ("train/loss.tsv", "test/accuracy.tsv"):  # the resumed history is the whole history
        a = (Artifacts(tmp_path).history_dir / tsv).read_text()
        assert a == (Artifacts(reference).history_dir / tsv).read_text()
        assert len(a.splitlines()) == 1 + EPOCHS
    assert not any(Artifacts(tmp_path).train_state.iterdir())  # state removed after success


# airbench94_muon (its tiny recipe) with random flips and shifts on: a resume must restore their random state too.
AUGMENTED = {"batch_size": 20, "flip": "random", "translate": 2}


@pytest.mark.slow
@pytest.mark.parametrize(
    "precision, model, recipe",
    [("mixed_bfloat16", "seed_cnn", {}), ("float32", "airbench94_muon", AUGMENTED)],
    ids=["bfloat16", "airbench94_muon-augmented"],
)
def test_train_killed_mid_epoch_then_rerun_equals_an_uninterrupted_run_of_the_same_kind(
    tmp_path, precision, model, recipe
):
    reference, attacked = tmp_path / "reference", tmp_path / "attacked"
    for path in (reference, attacked):
        prepare_workspace(path, precision=precision, epochs=EPOCHS, model=model, **recipe)
    run_stage_process("train", reference)
    run_attacked("mid-epoch", "train", attacked)
    result = run_stage_process("train", attacked)
    assert "resuming from" in result.stdout and f"precision: {precision}" in result.stdout
    assert_same_weights(weights_of(Artifacts(attacked).model), weights_of(Artifacts(reference).model))


@pytest.mark.parametrize("point", ["mid-write", "final-rename"])
def test_preprocess_killed_mid_write_leaves_the_good_outputs_or_none(tmp_path, point):
    prepare_workspace(tmp_path, precision="float32")  # no training here
    run_stage_process("fetch", tmp_path)
    prepared = Artifacts(tmp_path).prepared_dir
    before = {path.name: path.read_bytes() for path in prepared.iterdir()}
    set_params(tmp_path, preprocess={"max_train_images": 60})  # the next run writes other arrays
    run_attacked(point, "preprocess", tmp_path)
    after = {path.name: path.read_bytes() for path in prepared.iterdir() if not path.name.startswith(".")}
    assert after.keys() == before.keys()
    assert list(prepared.glob(".*.tmp*")), "the kill should have left a temporary file"
    if point == "mid-write":  # killed writing the first output: every earlier one intact
        assert after == before
    else:  # killed before the last rename: the earlier files are new and whole, the last one old and whole
        assert np.load(prepared / "x_train.npy").shape == (60, 32, 32, 3)
        assert after["stats.json"] == before["stats.json"]
    run_stage_process("preprocess", tmp_path)
    assert np.load(prepared / "x_train.npy").shape == (60, 32, 32, 3)
    assert not list(prepared.glob(".*.tmp*")), "the rerun should have removed the stale temporary file"


def limited_file_size(limit):
    """preexec_fn: files this process writes may not grow past `limit` bytes (write() fails with EFBIG)."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.parametrize(
    "stage, limit, victim",
    [
        ("preprocess", 100_000, "data/prepared/x_train.npy"),  # 100 images: 307 KB
        ("train", 1_000_000, ".train_state/"),  # its first checkpoint: about 13 MB
    ],
)
def test_full_disk_gives_one_error_line_and_keeps_the_previous_output(tmp_path, reference, stage, limit, victim):
    tmp_path = Path(shutil.copytree(reference, tmp_path / "workspace"))  # prepared data and a trained model
    run_stage_process("fetch", tmp_path)
    before = {path: path.read_bytes() for path in Artifacts(tmp_path).prepared_dir.iterdir()}
    before[Artifacts(tmp_path).model] = Artifacts(tmp_path).model.read_bytes()
    set_params(tmp_path, train={"seed": 8})  # train must rerun; preprocess rewrites the same arrays
    result = run_stage_process(stage, tmp_path, check=False, preexec_fn=limited_file_size(limit))
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: cannot write {victim}"), result.stderr[-2000:]
    for path, data in before.items():
        assert path.read_bytes() == data, f"{path} changed"
    assert not list(tmp_path.glob("**/.*.tmp*")), "temporary files left behind"


def test_fetch_killed_mid_download_then_rerun_completes(tmp_path):
    archive = tmp_path / "served.tar.gz"
    write_cifar_archive(archive)
    with serving(archive, mode="stall") as (handler, url):  # a third of it, then nothing: the download in progress
        scratch_workspace(tmp_path)
        checksum = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
        (tmp_path / "served.yaml").write_text(yaml.safe_dump({"url": url, "checksum": checksum}))
        set_params(tmp_path, fetch={"source": "served.yaml"})
        env = {**stage_env(), "KERAS_HOME": str(tmp_path / "keras_home")}
        process = subprocess.Popen(
            [sys.executable, "-m", "stages.fetch"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert handler.stalled.wait(120), "the download never started"
        partial = tmp_path / "keras_home/datasets" / archive.name
        # the server has sent its third; the client opens its file once it has read the headers
        deadline = time.monotonic() + 60
        while not partial.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        handler.mode = "ok"  # the next request gets it all
        handler.release.set()
        # killed mid-download: the download had begun its file in the cache (its bytes may not be flushed yet)
        assert partial.stat().st_size < len(handler.payload)
        assert not Artifacts(tmp_path).raw_dir.exists()
        result = subprocess.run(
            [sys.executable, "-m", "stages.fetch"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert Artifacts(tmp_path).raw_dataset.read_bytes() == archive.read_bytes()
        assert handler.requests == 2


# Image folders: what is refused, what is converted.


def folder_archive(tmp_path, extra=None, dirs=(), **kwargs):
    path = tmp_path / "images.tar"
    write_image_folder_archive(path, extra=extra, **kwargs)
    if dirs:
        with tarfile.open(path, "a") as tar:
            for name in dirs:
                info = tarfile.TarInfo(name)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
    return path


def jpeg(size=32):
    return encode_image(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8), "JPEG")


def test_truncated_jpeg_is_refused_naming_it(tmp_path):
    path = folder_archive(tmp_path, extra={"train/cat/cut.jpg": jpeg()[:200]})
    with pytest.raises(PipelineError, match=r"train/cat/cut.jpg: cannot decode image"):
        read_dataset(path, progress=lambda message: None)


def test_non_image_files_are_skipped(tmp_path):
    plain = read_dataset(folder_archive(tmp_path, train=20, test=10), progress=lambda message: None)
    (tmp_path / "with_notes").mkdir()
    noted = read_dataset(
        folder_archive(
            tmp_path / "with_notes",
            train=20,
            test=10,
            extra={"train/cat/notes.txt": b"hello", "test/.DS_Store": b"\0\1"},
        ),
        progress=lambda message: None,
    )
    np.testing.assert_array_equal(plain.x_train, noted.x_train)
    assert plain.classes == noted.classes


def test_empty_class_folder_is_refused(tmp_path):
    path = folder_archive(tmp_path, dirs=["train/unicorn", "test/unicorn"])
    with pytest.raises(PipelineError, match=r"class folder train/unicorn has no images"):
        read_dataset(path, progress=lambda message: None)


def test_empty_dataset_is_refused(tmp_path):
    path = folder_archive(tmp_path, train=0, test=0, dirs=["train", "test"])
    with pytest.raises(PipelineError, match="no dataset found"):
        read_dataset(path, progress=lambda message: None)


def test_large_and_odd_mode_images_are_converted(tmp_path):
    extra = {
        "train/cat/big.jpg": jpeg(300),
        "train/cat/cmyk.jpg": encode_image(np.zeros((32, 32, 3), np.uint8), "JPEG", "CMYK"),
    }
    data = read_dataset(folder_archive(tmp_path, extra=extra, train=20, test=10), progress=lambda message: None)
    assert data.x_train.shape == (22, 32, 32, 3) and data.x_train.dtype == np.uint8
