"""airbench94's reference benchmark: the file it runs is checked, its device changes are required to
match, and (where PyTorch and the pinned file are at hand) it trains on our data and times both sides.

PyTorch is an optional extra (README, docs/fast-model.md): without it, or without the pinned file in
the Keras cache (tests never download), the tests that run the reference are skipped.
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import bench_airbench
from benchmarks.workspace import PROJECT, stage_env

REFERENCE = bench_airbench.cached_reference()
needs_reference = pytest.mark.skipif(
    not (bench_airbench.torch_available() and REFERENCE),
    reason="PyTorch (pip install -e .[reference]) or the pinned airbench94.py in the Keras cache is missing",
)


def test_a_file_that_is_not_the_pinned_reference_is_refused(tmp_path):
    altered = tmp_path / "airbench94.py"
    altered.write_text("hyp = {}\nprint('not the reference')\n")
    with pytest.raises(bench_airbench.ReferenceFileError) as error:
        bench_airbench.reference_source(altered)
    message = str(error.value)
    assert str(altered) in message and hashlib.sha256(altered.read_bytes()).hexdigest() in message
    assert bench_airbench.REFERENCE_SHA256 in message and bench_airbench.REFERENCE_URL in message


def test_every_device_change_must_match_exactly():
    source = "".join(old * count + "\n" for old, _, count, _ in bench_airbench.DEVICE_CHANGES)
    changed = bench_airbench.apply_device_changes(source)
    for _, new, _, _ in bench_airbench.DEVICE_CHANGES:
        assert new in changed
    assert "torch.cuda" not in changed and ".half()" not in changed
    for old, _, _, why in bench_airbench.DEVICE_CHANGES:
        with pytest.raises(bench_airbench.ReferenceFileError, match=why):
            bench_airbench.apply_device_changes(source.replace(old, "", 1))


def test_the_reference_table_is_parsed_into_rows():
    printed = "-----\n|  run  |  epoch  |  val_acc  |  tta_val_acc  |\n-----\n|  0  |  0  |  0.5958  |    |\n"
    printed += "|     |  eval  |  0.9000  |  0.9100  |\n"
    rows = bench_airbench.parse_rows(printed)
    assert rows == [{"run": 0, "epoch": 0, "val_acc": 0.5958}, {"epoch": "eval", "val_acc": 0.9, "tta_val_acc": 0.91}]


def coloured_classes(count, seed):
    """Images whose class is their colour: a net that reads the right labels learns them in an epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    palette = rng.integers(0, 256, (10, 3))
    noise = rng.integers(-30, 30, (count, 32, 32, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


@needs_reference
def test_reference_trains_on_our_arrays_and_reports_its_accuracy_and_speed(tmp_path):
    images, labels = coloured_classes(712, seed=0)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    for name, array in {
        "x_train": images[:512],
        "y_train": labels[:512],
        "x_test": images[512:],
        "y_test": labels[512:],
    }.items():
        np.save(prepared / f"{name}.npy", array)
    (prepared / "classes.json").write_text(json.dumps([f"class{i}" for i in range(10)]))
    out = tmp_path / "reference.json"
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--data", str(prepared), "--epochs", "2"]
    command += ["--batch-size", "64", "--widths", "8", "32", "32", "--reference", str(REFERENCE), "--json", str(out)]
    run = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["test_accuracy_tta"] >= 0.3  # chance is 0.1 (measured 0.485): images and labels arrive together
    assert [row["epoch"] for row in result["epochs"]] == [0, 1]
    assert result["test_accuracy"] == result["epochs"][-1]["val_acc"]
    assert result["hyp"]["net"]["base_width"] == 8 and result["hyp"]["opt"]["batch_size"] == 64
    assert result["dtype"] in ("float32", "bfloat16") and result["train_images"] == 512
    assert 0 < result["train_s"] < result["timed_s"] <= result["wall_s"]
    assert result["train_images_per_s"] == pytest.approx(2 * 512 / result["train_s"], rel=0.1)  # train_s is rounded
    assert "test accuracy" in run.stdout


def test_widths_other_than_airbenchs_shape_are_refused():
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--widths", "8", "16", "16"]
    run = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "--widths 8 16 16: airbench94's are w 4w 4w" in run.stderr


@needs_reference
def test_speed_anchor_times_both_sides_in_turn(tmp_path):
    out = tmp_path / "anchor.json"
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--anchor", "--images", "128", "--batch-size", "64"]
    command += ["--widths", "8", "32", "32", "--repeats", "2", "--reference", str(REFERENCE), "--json", str(out)]
    result = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(out.read_text())
    for side in ("airbench94", "ours"):
        assert len(row["images_per_s"][side]["samples"]) == 2 and row["images_per_s"][side]["median"] > 0
    assert row["ratio"] == pytest.approx(
        row["images_per_s"]["ours"]["median"] / row["images_per_s"]["airbench94"]["median"], rel=0.01
    )
    assert "ours / airbench94" in result.stdout
