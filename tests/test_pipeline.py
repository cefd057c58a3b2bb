"""End to end: the real `dvc repro` on a tiny generated dataset in a throwaway git + DVC repo."""

import json
import sys

import numpy as np
import pytest
import yaml

from cifar.core.artifacts import Artifacts
from cifar.models.saved import computes_in_bfloat16, load_trained_model
from tests.conftest import PROJECT
from tests.datagen import (
    CLASSES,
    FINE_CLASSES,
    desktop_extras,
    encode_image,
    write_cifar100_archive,
    write_cifar_archive,
    write_cifar_binary_archive,
    write_image_folder_archive,
)
from tests.dvc_repo import make_repo
from tests.helpers import recomputed_test_metrics

TINY = {
    "visualize": {"iterations": 3},
    "robustness": {"max_images": 40},
    "export": {"representative_images": 20, "latency_runs": 5},
    "preprocess": {"max_train_images": 100, "max_test_images": 40},
    # float32: these repos' runs are compared with each other (tests/helpers.py: prepare_workspace)
    "train": {"precision": "float32"},
    "seed_cnn": {"epochs": 1, "batch_size": 16},
}

# Every stage of dvc.yaml, in its order: a stage added later is run by the end-to-end tests too.
STAGES = list(yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"])


def ran_stages(output):
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.slow
def test_dvc_repro_end_to_end_noop_and_evaluate_only(tmp_path):
    repo = repro_every_stage(tmp_path, "float32")
    root = repo.path
    metrics = json.loads(Artifacts(root).metrics.read_text())
    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    workspace_metrics = shown[""]["data"]["reports/metrics.json"]["data"]
    assert workspace_metrics["accuracy"] == metrics["accuracy"]

    second = repo.dvc("repro")
    assert ran_stages(second.stdout) == []
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."

    before = Artifacts(root).model.read_bytes()
    repo.set_params(evaluate={"seed": 5})
    third = repo.dvc("repro")
    assert ran_stages(third.stdout) == ["evaluate"]
    assert Artifacts(root).model.read_bytes() == before


def repro_every_stage(tmp_path, precision, env=None):
    """`dvc repro` of every stage with `train.precision: precision` on tiny data; each output checked.

    The bfloat16 runs: tests/test_pipeline_bfloat16.py. `env`: variables for the stages."""
    archive = tmp_path / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = make_repo(tmp_path / "repo", archive, **{**TINY, "train": {"precision": precision}})
    assert ran_stages(repo.dvc("repro", env=env).stdout) == STAGES
    root = repo.path
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    for stage, entry in lock.items():
        for out in entry["outs"]:
            assert (root / out["path"]).exists() and out["size"] > 0, (stage, out["path"])
    assert np.load(Artifacts(root).x_train).shape == (100, 32, 32, 3)
    metrics = json.loads(Artifacts(root).metrics.read_text())
    accuracy, loss = recomputed_test_metrics(root)  # the model's own predictions, without the stage's code
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert metrics["loss"] == pytest.approx(loss, abs=1e-3)
    for figure in ("samples.png", "confusion_matrix.png", "predictions.png", "gradcam.png", "stimuli/classes.png"):
        assert (root / "reports/figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    resolved = yaml.safe_load((Artifacts(root).train_reports / "params.yaml").read_text())["precision"]
    bfloat16 = computes_in_bfloat16(load_trained_model(Artifacts(root).model))
    assert bfloat16 == (resolved == "mixed_bfloat16")
    exported = json.loads(Artifacts(root).export_record.read_text())
    assert exported["trained_precision"] == resolved and exported["tflite_float32"]["agreement_with_keras"] >= 0.9
    return repo


def desktop_zip(system):
    def write(path):
        write_image_folder_archive(
            path, train=100, test=40, prefix="my images/", extra=desktop_extras(system, "my images/")
        )
        return sorted(CLASSES)

    return write


def binary_archive(path):
    write_cifar_binary_archive(path)
    return CLASSES


def cifar100_archive(path):
    write_cifar100_archive(path, train=200, test=100)
    return FINE_CLASSES


LAYOUTS = {
    "macos-zip": ("images.zip", desktop_zip("macos")),
    "windows-zip": ("images.zip", desktop_zip("windows")),
    "cifar10-binary": ("cifar-10-binary.tar.gz", binary_archive),
    "cifar100": ("cifar-100-python.tar.gz", cifar100_archive),
}


@pytest.mark.slow
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_dvc_repro_runs_end_to_end_from_every_layout(tmp_path, layout):
    name, write = LAYOUTS[layout]
    classes = write(tmp_path / name)
    sizes = {"max_train_images": 200, "max_test_images": 100} if layout == "cifar100" else {}
    repo = make_repo(tmp_path / "repo", tmp_path / name, **{**TINY, "preprocess": {**TINY["preprocess"], **sizes}})
    # CIFAR-100's 100 classes through every stage; the other layouts through the tutorial's stages
    targets = [] if layout == "cifar100" else ["evaluate", "visualize"]
    expected = STAGES if layout == "cifar100" else ["fetch", "preprocess", "train", "evaluate", "visualize"]
    assert ran_stages(repo.dvc("repro", *targets).stdout) == expected
    root = repo.path
    assert json.loads(Artifacts(root).model_classes.read_text()) == classes
    assert set(json.loads(Artifacts(root).metrics.read_text())["per_class"]) == set(classes)
    assert len(json.loads(Artifacts(root).stimuli_record.read_text())["classes"]) == len(classes)
    rows = Artifacts(root).confusion_data.read_text().splitlines()
    assert len(rows) == 1 + len(np.load(Artifacts(root).y_test))
    for figure in ("confusion_matrix.png", "predictions.png", "stimuli/classes.png"):
        assert (root / "reports/figures" / figure).read_bytes()[:4] == b"\x89PNG"
    image = root / "query.png"
    image.write_bytes(encode_image(np.full((32, 32, 3), 128, np.uint8)))
    predicted = json.loads(repo.run(sys.executable, "-m", "stages.predict", "--json", "--top", "3", str(image)).stdout)
    assert {row["class"] for row in predicted["predictions"][str(image)]} <= set(classes)
