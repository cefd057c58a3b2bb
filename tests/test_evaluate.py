import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.evaluation.metrics import compute_metrics, confusion_rows
from cifar.network.trained import load_trained_model
from stages.evaluate import evaluate, main
from tests.conftest import set_params
from tests.datagen import CLASSES
from tests.helpers import ece_by_definition, probabilities_by_hand


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


@pytest.fixture(scope="module")
def trained(trained_workspace):
    """The suite's shared tiny trained workspace of each model (tests/helpers.py: SHARED_TRAINING), well
    above chance on its test images, so that a stage that mixes up images, labels or classes would
    score visibly differently from the model."""
    return {model: trained_workspace(model) for model in ("seed_cnn", "fast")}


def test_evaluate_writes_metrics_and_figures(trained):
    path = trained["seed_cnn"]
    metrics = evaluate({"batch_size": 256, "seed": 0, "mistakes": 16}, artifacts=Artifacts(path))
    on_disk = json.loads(Artifacts(path).metrics.read_text())
    assert on_disk == metrics
    # Every figure recomputed from the model's own predictions (no test-time augmentation here)
    x_test, y_test = np.load(Artifacts(path).x_test), np.load(Artifacts(path).y_test)
    probabilities = load_trained_model(Artifacts(path).model).predict(x_test, verbose=0).astype(np.float64)
    right = probabilities[np.arange(len(y_test)), y_test]
    assert on_disk["accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == y_test), abs=1e-6)
    assert on_disk["accuracy"] >= 0.5  # measured 0.9 (AMD EPYC, float32); chance is 0.1
    assert on_disk["loss"] == pytest.approx(-np.mean(np.log(right)), abs=1e-4)
    assert on_disk["nll"] == pytest.approx(-np.mean(np.log(right)), abs=1e-4)
    assert on_disk["ece"] == pytest.approx(ece_by_definition(probabilities, y_test), abs=1e-4)
    assert list(on_disk["per_class"]) == CLASSES
    for figure in ("confusion_matrix.png", "predictions.png"):
        with Image.open(path / "reports/figures" / figure) as image:
            assert image.format == "PNG"


@pytest.mark.parametrize(
    "model, tta, expected_level",
    [
        ("fast", {"fast": 0}, 0),
        ("fast", {"fast": 1}, 1),
        ("fast", {"fast": 2, "seed_cnn": 0}, 2),
        ("seed_cnn", {"fast": 2, "seed_cnn": 0}, 0),  # the level of the model in use, not another's
        ("seed_cnn", {"fast": 0, "seed_cnn": 1}, 1),
    ],
)
def test_the_stage_entry_scores_the_views_its_params_select(trained, monkeypatch, capsys, model, tta, expected_level):
    path = trained[model]
    monkeypatch.chdir(path)
    set_params(path, tta=tta)
    assert cli.run(main, []) == 0
    x_test, y_test = np.load("data/prepared/x_test.npy"), np.load("data/prepared/y_test.npy")
    probabilities = probabilities_by_hand("models/model.keras", x_test, expected_level)
    predicted = probabilities.argmax(axis=1)
    metrics = json.loads(Path("reports/metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(np.mean(predicted == y_test), abs=1e-6)
    nll = -np.mean(np.log(probabilities[np.arange(len(y_test)), y_test]))
    assert metrics["loss"] == pytest.approx(nll, abs=1e-4) and metrics["nll"] == pytest.approx(nll, abs=1e-4)
    assert metrics["ece"] == pytest.approx(ece_by_definition(probabilities, y_test), abs=1e-4)
    # per class, by name: the classes differ, so values attached to another class's name would show
    recall = {name: np.mean(predicted[y_test == k] == k) for k, name in enumerate(CLASSES)}
    assert len(set(recall.values())) > 1
    for k, name in enumerate(CLASSES):
        chosen = predicted == k
        precision = np.mean(y_test[chosen] == k) if chosen.any() else 0.0
        f1 = 2 * precision * recall[name] / (precision + recall[name]) if precision + recall[name] else 0.0
        expected = {"precision": precision, "recall": recall[name], "f1-score": f1}
        assert metrics["per_class"][name] == pytest.approx(expected, abs=1e-6), name
    assert f"(test-time augmentation: {expected_level})" in capsys.readouterr().out
    # confusion.csv: one (actual, predicted) row per test image, in order; its counts are scikit-learn's matrix
    rows = list(csv.DictReader(io.StringIO(Path("reports/eval/confusion.csv").read_text())))
    assert [(row["actual"], row["predicted"]) for row in rows] == [
        (CLASSES[t], CLASSES[p]) for t, p in zip(y_test, predicted)
    ]
    counts = np.zeros((len(CLASSES), len(CLASSES)), int)
    for row in rows:
        counts[CLASSES.index(row["actual"]), CLASSES.index(row["predicted"])] += 1
    np.testing.assert_array_equal(counts, confusion_matrix(y_test, predicted, labels=range(len(CLASSES))))
