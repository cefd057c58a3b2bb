import csv
import io
import json
from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix

from benchmarks.workspace import set_params
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.evaluation.gradcam import grad_cam
from cifar.evaluation.metrics import compute_metrics, confusion_rows, most_confident_mistakes, per_class_accuracy
from cifar.evaluation.reliability import expected_calibration_error, negative_log_likelihood, reliability_bins
from cifar.network.layers import normalized_input
from cifar.network.trained import load_trained_model
from stages.evaluate import evaluate, main
from tests import summaries
from tests.datagen import CLASSES
from tests.helpers import ece_by_definition, keras_probabilities, probabilities_by_hand


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
    return {model: trained_workspace(model) for model in ("seed_cnn", "airbench94_muon")}


def test_evaluate_writes_metrics_and_figures(trained):
    path = trained["seed_cnn"]
    metrics = evaluate({"batch_size": 256, "seed": 0, "mistakes": 16, "tta_fraction": 1.0}, artifacts=Artifacts(path))
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
    "model, tta, expected_level, fraction",
    [
        ("airbench94_muon", {"airbench94_muon": 0}, 0, 1.0),
        ("airbench94_muon", {"airbench94_muon": 1}, 1, 1.0),
        ("airbench94_muon", {"airbench94_muon": 2, "seed_cnn": 0}, 2, 1.0),
        ("seed_cnn", {"airbench94_muon": 2, "seed_cnn": 0}, 0, 1.0),  # the level of the model in use, not another's
        ("seed_cnn", {"airbench94_muon": 0, "seed_cnn": 1}, 1, 1.0),
        ("airbench94_muon", {"airbench94_muon": 2}, 2, 0.25),  # the views for the least confident quarter
        ("seed_cnn", {"seed_cnn": 1}, 1, 0.6),
        ("airbench94_muon", {"airbench94_muon": 2}, 2, 0.0),  # none: the plain pass alone
    ],
)
def test_the_stage_entry_scores_the_views_its_params_select(
    trained, monkeypatch, capsys, model, tta, expected_level, fraction
):
    path = trained[model]
    monkeypatch.chdir(path)
    set_params(path, tta=tta, evaluate={"tta_fraction": fraction})
    assert cli.run(main, []) == 0
    x_test, y_test = np.load("data/prepared/x_test.npy"), np.load("data/prepared/y_test.npy")
    probabilities = probabilities_by_hand("models/model.keras", x_test, expected_level, fraction=fraction)
    if 0 < fraction < 1:  # some images got the views and some not: the selection changed predictions or scores
        plain, every = (probabilities_by_hand("models/model.keras", x_test, level) for level in (0, expected_level))
        assert not np.allclose(probabilities, plain, atol=1e-4) and not np.allclose(probabilities, every, atol=1e-4)
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
    summaries.check_evaluate(capsys.readouterr().out.splitlines(), metrics, expected_level, fraction)
    # confusion.csv: one (actual, predicted) row per test image, in order; its counts are scikit-learn's matrix
    rows = list(csv.DictReader(io.StringIO(Path("reports/eval/confusion.csv").read_text())))
    assert [(row["actual"], row["predicted"]) for row in rows] == [
        (CLASSES[t], CLASSES[p]) for t, p in zip(y_test, predicted)
    ]
    counts = np.zeros((len(CLASSES), len(CLASSES)), int)
    for row in rows:
        counts[CLASSES.index(row["actual"]), CLASSES.index(row["predicted"])] += 1
    np.testing.assert_array_equal(counts, confusion_matrix(y_test, predicted, labels=range(len(CLASSES))))


def test_ece_of_a_case_computed_by_hand():
    # Two classes; confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.55 (wrong).
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.55, 0.45]])
    labels = np.array([0, 1, 1, 1])
    # 15 bins: 0.9 falls in (13/15, 14/15], 0.6 and 0.55 in (8/15, 9/15]. Each bin: half right.
    # ECE = 2/4 * |0.5 - 0.9| + 2/4 * |0.5 - (0.6 + 0.55) / 2| = 0.2 + 0.0375
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.2375)
    counts = [count for _, _, count, _, _ in reliability_bins(probabilities, labels)]
    assert counts[13] == 2 and counts[8] == 2 and sum(counts) == 4
    nll = -(np.log(0.9) + np.log(0.1) + np.log(0.6) + np.log(0.45)) / 4
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(nll)


def test_a_confidence_on_a_bin_edge_belongs_to_the_lower_bin():
    probabilities = np.array([[2 / 3, 1 / 3], [1.0, 0.0]])  # 2/3 = 10/15: the upper edge of bin 10
    bins = reliability_bins(probabilities, np.array([0, 0]))
    assert bins[9][2] == 1 and bins[14][2] == 1
    assert expected_calibration_error(probabilities, np.array([0, 0])) == pytest.approx((1 / 3) / 2)


def test_the_most_confident_mistakes_come_first_and_accuracy_is_per_class():
    probabilities = np.array([[0.6, 0.4], [0.1, 0.9], [0.95, 0.05], [0.3, 0.7]])
    labels = np.array([1, 1, 1, 0])
    assert most_confident_mistakes(probabilities, labels, 5).tolist() == [2, 3, 0]
    assert most_confident_mistakes(probabilities, labels, 1).tolist() == [2]
    np.testing.assert_allclose(per_class_accuracy(probabilities.argmax(1), labels, 3), [0.0, 1 / 3, np.nan])


def halves_model():
    """Class 0's score is the mean of filter 0, which sees red; class 1's of filter 1, which sees blue."""
    inputs, x = normalized_input()
    conv = keras.layers.Conv2D(2, 1, use_bias=False, name="conv")
    x = keras.layers.ReLU(name="relu")(conv(x))
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, use_bias=False, name="scores")
    outputs = keras.layers.Activation("softmax")(dense(x))
    model = keras.Model(inputs, outputs)
    conv.set_weights([np.array([[[[1, 0], [0, 0], [0, 1]]]], np.float32)])  # red -> filter 0, blue -> filter 1
    dense.set_weights([np.eye(2, dtype=np.float32)])
    return model


def test_gradcam_points_at_the_evidence_for_the_class_asked():
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[:, :, :16, 0] = 255  # red left half: class 0's evidence
    image[:, :, 16:, 2] = 255  # blue right half: class 1's
    model = halves_model()
    heatmaps = grad_cam(model, np.repeat(image, 2, axis=0), [0, 1])
    assert heatmaps.shape == (2, 32, 32) and heatmaps.min() >= 0 and heatmaps.max() == pytest.approx(1)
    left, right = heatmaps[:, :, :16].mean(axis=(1, 2)), heatmaps[:, :, 16:].mean(axis=(1, 2))
    assert left[0] > 5 * right[0] and right[1] > 5 * left[1]


def test_evaluate_writes_calibration_failures_and_explains_the_predicted_class(trained, monkeypatch):
    import cifar.evaluation.gradcam

    explained = []  # (images, classes) of each Grad-CAM figure, as the stage asked for them
    real_grad_cam = cifar.evaluation.gradcam.grad_cam

    def recording_grad_cam(model, images, classes, **options):
        explained.append((np.array(images), np.array(classes)))
        return real_grad_cam(model, images, classes, **options)

    monkeypatch.setattr(cifar.evaluation.gradcam, "grad_cam", recording_grad_cam)
    artifacts = Artifacts(trained["seed_cnn"])
    metrics = evaluate({"batch_size": 64, "seed": 0, "mistakes": 8, "tta_fraction": 1.0}, 0, artifacts)

    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    probabilities = keras_probabilities(artifacts, x_test)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    # The reliability table: each bin's images, accuracy and confidence recomputed from the model
    rows = list(csv.DictReader(artifacts.reliability_data.open()))
    assert sum(int(row["images"]) for row in rows) == len(y_test)
    for row in rows:
        centre = float(row["bin"])
        members = (confidence > centre - 1 / 30) & (confidence <= centre + 1 / 30)
        assert int(row["images"]) == members.sum() > 0
        assert float(row["accuracy"]) == pytest.approx(np.mean(predicted[members] == y_test[members]), abs=1e-6)
        assert float(row["confidence"]) == pytest.approx(confidence[members].mean(), abs=1e-5)
    per_class = {
        row["class"]: float(row["accuracy"]) for row in csv.DictReader(artifacts.per_class_accuracy_data.open())
    }
    assert per_class == pytest.approx(
        {name: np.mean(predicted[y_test == k] == k) for k, name in enumerate(artifacts.load_classes())}, abs=1e-6
    )
    assert metrics["nll"] == pytest.approx(-np.mean(np.log(probabilities[np.arange(len(y_test)), y_test])), abs=1e-4)
    for figure in ("reliability", "per_class_accuracy", "mistakes", "gradcam", "gradcam_mistakes"):
        assert getattr(artifacts, f"{figure}_figure").read_bytes()[:4] == b"\x89PNG"
    # Grad-CAM explains the class the model predicts: on the mistakes' figure that is never the true one
    (shown, shown_classes), (mistakes, mistake_classes) = explained
    assert len(shown) == 16 and len(mistakes) > 0
    for images, classes in explained:
        np.testing.assert_array_equal(classes, keras_probabilities(artifacts, images).argmax(axis=1))
    truth = {image.tobytes(): label for image, label in zip(x_test, y_test)}
    assert all(truth[image.tobytes()] != label for image, label in zip(mistakes, mistake_classes))
