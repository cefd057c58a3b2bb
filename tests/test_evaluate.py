import json

import numpy as np
import pytest
from PIL import Image

from stages.evaluate import compute_metrics, confusion_rows, evaluate
from stages.train import train
from tests.datagen import CLASSES
from tests.helpers import prepare_workspace


def test_metrics_agree_with_first_principles():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 3, 50)
    logits = rng.normal(size=(50, 3)) + 2 * np.eye(3)[y_true]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    classes = ["a", "b", "c"]
    metrics = compute_metrics(y_true, probabilities, classes)
    predicted = probabilities.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y_true), abs=1e-6)
    assert metrics["loss"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(50), y_true])), abs=1e-6)
    for k, name in enumerate(classes):
        tp = np.sum((predicted == k) & (y_true == k))
        precision, recall = tp / np.sum(predicted == k), tp / np.sum(y_true == k)
        assert metrics["per_class"][name]["precision"] == pytest.approx(precision, abs=1e-6)
        assert metrics["per_class"][name]["recall"] == pytest.approx(recall, abs=1e-6)
        assert metrics["per_class"][name]["f1-score"] == pytest.approx(
            2 * precision * recall / (precision + recall), abs=1e-6
        )
    assert metrics["macro"]["recall"] == pytest.approx(
        np.mean([metrics["per_class"][c]["recall"] for c in classes]), abs=1e-6
    )


def test_confusion_rows_name_classes():
    text = confusion_rows(np.array([0, 1, 1]), np.array([0, 0, 1]), ["cat", "dog"])
    assert text.splitlines() == ["actual,predicted", "cat,cat", "dog,cat", "dog,dog"]


def test_evaluate_writes_metrics_and_figures(tmp_path, monkeypatch):
    params = prepare_workspace(tmp_path, precision="auto", epochs=1)
    monkeypatch.chdir(tmp_path)
    train(params)
    metrics = evaluate(params["evaluate"])
    on_disk = json.loads((tmp_path / "reports/metrics.json").read_text())
    assert on_disk == metrics
    assert 0 <= on_disk["accuracy"] <= 1 and on_disk["loss"] > 0
    assert set(on_disk["per_class"]) == set(CLASSES)
    rows = (tmp_path / "reports/eval/confusion.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == 1 + len(np.load(tmp_path / "data/prepared/y_test.npy"))
    for figure in ("confusion_matrix.png", "predictions.png"):
        with Image.open(tmp_path / "reports/figures" / figure) as image:
            assert image.format == "PNG"
