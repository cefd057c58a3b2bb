"""End to end: the real `dvc repro` on a tiny generated dataset in a throwaway git + DVC repo."""

import json
import sys

import numpy as np
import pytest

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

TINY = {
    "visualize": {"iterations": 3},
    "robustness": {"max_images": 40},
    "export": {"representative_images": 20, "latency_runs": 5},
    "preprocess": {"max_train_images": 100, "max_test_images": 40},
    # float32: these repos' runs are compared with each other (tests/helpers.py: prepare_workspace)
    "train": {"precision": "float32"},
    "seed_cnn": {"epochs": 1, "batch_size": 16},
}


# dvc.yaml's stages, in the order `dvc repro` runs them
STAGES = ["fetch", "preprocess", "train", "evaluate", "robustness", "export", "visualize"]


def ran_stages(output):
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.slow
def test_dvc_repro_end_to_end_noop_and_evaluate_only(tmp_path):
    archive = tmp_path / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = make_repo(tmp_path / "repo", archive, **TINY)

    first = repo.dvc("repro")
    assert ran_stages(first.stdout) == STAGES
    root = repo.path
    assert np.load(root / "data/prepared/x_train.npy").shape == (100, 32, 32, 3)
    assert (root / "models/model.keras").is_file()
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
    for figure in ("samples.png", "confusion_matrix.png", "predictions.png"):
        assert (root / "reports/figures" / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    workspace_metrics = shown[""]["data"]["reports/metrics.json"]["data"]
    assert workspace_metrics["accuracy"] == metrics["accuracy"]

    second = repo.dvc("repro")
    assert ran_stages(second.stdout) == []
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."

    before = (root / "models/model.keras").read_bytes()
    repo.set_params(evaluate={"seed": 5})
    third = repo.dvc("repro")
    assert ran_stages(third.stdout) == ["evaluate"]
    assert (root / "models/model.keras").read_bytes() == before


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
    assert json.loads((root / "models/classes.json").read_text()) == classes
    assert set(json.loads((root / "reports/metrics.json").read_text())["per_class"]) == set(classes)
    assert len(json.loads((root / "reports/stimuli.json").read_text())["classes"]) == len(classes)
    rows = (root / "reports/eval/confusion.csv").read_text().splitlines()
    assert len(rows) == 1 + len(np.load(root / "data/prepared/y_test.npy"))
    for figure in ("confusion_matrix.png", "predictions.png", "stimuli/classes.png"):
        assert (root / "reports/figures" / figure).read_bytes()[:4] == b"\x89PNG"
    image = root / "query.png"
    image.write_bytes(encode_image(np.full((32, 32, 3), 128, np.uint8)))
    predicted = json.loads(repo.run(sys.executable, "-m", "stages.predict", "--json", "--top", "3", str(image)).stdout)
    assert {row["class"] for row in predicted["predictions"][str(image)]} <= set(classes)
