"""End to end: the real `dvc repro` on a tiny generated dataset in a throwaway git + DVC repo."""

import json

import numpy as np
import pytest

from tests.datagen import write_cifar_archive
from tests.dvc_repo import make_repo

TINY = {
    "visualize": {"iterations": 3},
    "preprocess": {"max_train_images": 100, "max_test_images": 40},
    # float32: these repos' runs are compared with each other (tests/helpers.py: prepare_workspace)
    "train": {"precision": "float32"},
    "seed_cnn": {"epochs": 1, "batch_size": 16},
}


def ran_stages(output):
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


@pytest.mark.slow
def test_dvc_repro_end_to_end_noop_and_evaluate_only(tmp_path):
    archive = tmp_path / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = make_repo(tmp_path / "repo", archive, **TINY)

    first = repo.dvc("repro")
    assert ran_stages(first.stdout) == ["fetch", "preprocess", "train", "evaluate", "visualize"]
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
