"""airbench's own code beside our port (benchmarks/airbench_peer.py runs the peer, airbench94.py or
airbench94_muon.py; benchmarks/bench_airbench.py compares): the file it runs is checked, its device
changes are required to match, and (where PyTorch and the pinned file are at hand) it trains on our data
and times both sides.

PyTorch is an optional extra (README, docs/fast-model.md): without it, or without the pinned file in
the Keras cache (tests never download), the tests that run the reference are skipped.
"""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from benchmarks import airbench_peer
from benchmarks.workspace import PROJECT, stage_env

AIRBENCH94, MUON = airbench_peer.AIRBENCH94, airbench_peer.AIRBENCH94_MUON
REFERENCE = airbench_peer.cached_reference()
MUON_REFERENCE = airbench_peer.cached_reference(MUON)
needs_reference = pytest.mark.skipif(
    not (airbench_peer.torch_available() and REFERENCE),
    reason="PyTorch (pip install -e .[reference]) or the pinned airbench94.py in the Keras cache is missing",
)
needs_muon_reference = pytest.mark.skipif(
    not (airbench_peer.torch_available() and MUON_REFERENCE),
    reason="PyTorch (pip install -e .[reference]) or the pinned airbench94_muon.py in the Keras cache is missing",
)


@pytest.mark.parametrize("peer", airbench_peer.PEERS.values(), ids=airbench_peer.PEERS)
def test_a_file_that_is_not_the_pinned_reference_is_refused(tmp_path, peer):
    altered = tmp_path / f"{peer.name}.py"
    altered.write_text("hyp = {}\nprint('not the reference')\n")
    with pytest.raises(airbench_peer.ReferenceFileError) as error:
        airbench_peer.reference_source(altered, peer)
    message = str(error.value)
    assert str(altered) in message and hashlib.sha256(altered.read_bytes()).hexdigest() in message
    assert peer.sha256 in message and peer.url in message and peer.commit[:7] in peer.url


@pytest.mark.parametrize("peer", airbench_peer.PEERS.values(), ids=airbench_peer.PEERS)
def test_every_device_change_must_match_exactly(peer):
    source = "".join(old * count + "\n" for old, _, count, _ in peer.device_changes)
    changed = airbench_peer.apply_device_changes(source, peer)
    for _, new, _, _ in peer.device_changes:
        assert new in changed
    assert "torch.cuda" not in changed and ".half()" not in changed and "@torch.compile" not in changed
    for old, _, _, why in peer.device_changes:
        with pytest.raises(airbench_peer.ReferenceFileError, match=why):
            airbench_peer.apply_device_changes(source.replace(old, "", 1), peer)


@pytest.mark.parametrize("peer", airbench_peer.PEERS.values(), ids=airbench_peer.PEERS)
def test_the_pinned_file_takes_its_device_changes_and_leaves_no_gpu_call(peer):
    path = airbench_peer.cached_reference(peer)
    if path is None:
        pytest.skip(f"the pinned {peer.name}.py is not in the Keras cache (tests never download)")
    changed = airbench_peer.apply_device_changes(airbench_peer.reference_source(path, peer), peer)
    main_block = changed.index('if __name__ == "__main__"')  # not run: the benchmark builds the model itself
    assert "cuda" not in changed[:main_block].replace("torch.backends.cudnn", "")
    assert ".half()" not in changed and "@torch.compile" not in changed


def test_the_reference_table_is_parsed_into_rows():
    printed = "-----\n|  run  |  epoch  |  val_acc  |  tta_val_acc  |\n-----\n|  0  |  0  |  0.5958  |    |\n"
    printed += "|     |  eval  |  0.9000  |  0.9100  |\n"
    rows = airbench_peer.parse_rows(printed)
    assert rows == [{"run": 0, "epoch": 0, "val_acc": 0.5958}, {"epoch": "eval", "val_acc": 0.9, "tta_val_acc": 0.91}]


def test_the_comparison_starts_the_peer_s_worker_with_a_command_line_it_parses_as_meant(tmp_path):
    """bench_airbench runs the peer in airbench_peer's worker process (`train` for its accuracy on our data,
    `speed` for the anchor), through worker_command: the worker reads each option back as given."""
    reference, out = tmp_path / "airbench94_muon.py", tmp_path / "out.json"
    train = airbench_peer.worker_command(
        "train", MUON, reference, data=tmp_path, seed=3, epochs=None, widths=[16, 64, 64], precision="float32", json=out
    )
    assert train[1:3] == ["-m", "benchmarks.airbench_peer"]
    args = airbench_peer.worker_parser().parse_args(train[3:])
    assert (args.part, args.peer, args.reference, args.data, args.json) == (
        "train", "airbench94_muon", str(reference), str(tmp_path), str(out)
    )  # fmt: skip
    assert (args.seed, args.widths, args.precision) == (3, [16, 64, 64], "float32")
    assert args.epochs is None and args.batch_size is None  # airbench94_muon's main() fixes both
    speed = airbench_peer.worker_command("speed", AIRBENCH94, None, images=128, batch_size=64, widths=[8, 32, 32])
    args = airbench_peer.worker_parser().parse_args(speed[3:])
    assert (args.part, args.peer, args.reference) == ("speed", "airbench94", None)
    assert (args.images, args.batch_size, args.widths) == (128, 64, [8, 32, 32])


def coloured_classes(count, seed):
    """Images whose class is their colour: a net that reads the right labels learns them in an epoch."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count)
    palette = rng.integers(0, 256, (10, 3))
    noise = rng.integers(-30, 30, (count, 32, 32, 3))
    images = np.clip(palette[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def prepared_arrays(tmp_path, count, train):
    """`count` coloured_classes images as preprocess's arrays in tmp_path/prepared, the first `train` to train on."""
    images, labels = coloured_classes(count, seed=0)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    arrays = {"x_train": images[:train], "y_train": labels[:train], "x_test": images[train:], "y_test": labels[train:]}
    for name, array in arrays.items():
        np.save(prepared / f"{name}.npy", array)
    (prepared / "classes.json").write_text(json.dumps([f"class{i}" for i in range(10)]))
    return prepared


def test_data_that_is_not_preprocess_s_arrays_of_ten_classes_is_refused(tmp_path):
    with pytest.raises(airbench_peer.ReferenceFileError, match="no x_train.npy there .run `dvc repro preprocess`"):
        airbench_peer.check_prepared(tmp_path)
    prepared = prepared_arrays(tmp_path, 30, train=20)
    assert airbench_peer.check_prepared(prepared) == [f"class{i}" for i in range(10)]
    (prepared / "classes.json").write_text(json.dumps(["cat", "dog"]))
    with pytest.raises(airbench_peer.ReferenceFileError, match="airbench94 is for 10 classes, the data has 2"):
        airbench_peer.check_prepared(prepared)


@needs_reference
def test_reference_trains_on_our_arrays_and_reports_its_accuracy_and_speed(tmp_path):
    prepared = prepared_arrays(tmp_path, 712, train=512)
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
    # train_s is rounded to 0.1 s, the rate computed from the unrounded seconds
    assert 2 * 512 / (result["train_s"] + 0.05) <= result["train_images_per_s"] <= 2 * 512 / (result["train_s"] - 0.05)
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
    ratio = row["images_per_s"]["ours"]["median"] / row["images_per_s"]["airbench94"]["median"]
    assert row["ratio"] == pytest.approx(ratio, abs=0.005 + 1e-9)  # rounded to two decimals
    assert "ours / airbench94" in result.stdout


@needs_muon_reference
def test_the_muon_reference_trains_at_the_given_widths_on_our_arrays(tmp_path):
    prepared = prepared_arrays(tmp_path, 4200, train=4000)  # two batches of its fixed 2,000: 16 steps in 8 epochs
    out = tmp_path / "muon.json"
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--peer", "airbench94_muon", "--data", str(prepared)]
    command += ["--widths", "32", "64", "64", "--reference", str(MUON_REFERENCE), "--json", str(out)]
    run = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(out.read_text())
    # Images and labels arrive together: its first epoch (2 steps) fits the colours well above chance
    # (0.48 measured). Later its summed loss diverges on these single-colour images (the loss reaches
    # 2,000 x ln 10 at every step: its biases' rate is tuned for real images), so the end says nothing.
    assert result["epochs"][0]["train_acc"] >= 0.3
    assert [row["epoch"] for row in result["epochs"]] == list(range(8)) and result["widths"] == [32, 64, 64]
    assert result["benchmark"] == "airbench94_muon_reference" and result["train_images"] == 4000
    assert 0 < result["train_s"] < result["timed_s"] <= result["wall_s"]
    assert result["train_images_per_s"] == pytest.approx(16 * 2000 / result["train_s"], rel=0.1)


def test_the_muon_peer_refuses_what_its_main_fixes():
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--peer", "airbench94_muon", "--batch-size", "64"]
    run = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "its batch and epochs are fixed (2,000 and 8)" in run.stderr
