"""Every figure the pipeline writes shows what it says: its images, titles, bars, lines and labels,
read from the Figure objects the stages save, equal what the model's own predictions give."""

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from sklearn.metrics import confusion_matrix

import cifar.reporting.report
from benchmarks.workspace import PROJECT
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.data.params import PREPROCESS
from cifar.figures.confusion import confusion_figure
from cifar.figures.curves import curves_figure
from cifar.figures.evaluation import per_class_accuracy_figure
from cifar.figures.stimuli import stimuli_figure
from cifar.visualization import gradient_ascent
from stages.evaluate import EVALUATE
from stages.robustness import ROBUSTNESS
from stages.visualize import VISUALIZE
from tests.datagen import CLASSES
from tests.figures_seen import (
    bars,
    capture_figures,
    grid_cells,
    image_axes,
    lines,
    shown_image,
    texts,
    tick_labels,
    which_images,
)
from tests.helpers import probabilities_by_hand

MODELS = ("seed_cnn", "airbench94_muon")
ITERATIONS = 3  # visualize's ascent steps: what the figures show is tested here, not how good the stimuli are
SCORE_ROUNDING = 5.1e-4  # a score printed with 3 decimals (or 3 significant digits, all scores being >= 0.1)


def quiet(message):
    pass


@dataclass
class Run:
    """One model's workspace after every figure-writing stage ran, and what the model predicts, recomputed."""

    model: str
    artifacts: Artifacts
    params: dict
    figures: dict  # {resolved target path: Figure}
    stimuli: list  # model_stimuli's (images, start activations, final activations) per layer, then the classes
    classes: list
    arrays: dict
    probabilities: np.ndarray  # of the test images, at the model's test-time augmentation level

    def figure(self, path):
        return self.figures[Path(path).resolve()]

    @property
    def predicted(self):
        return self.probabilities.argmax(axis=1)


@pytest.fixture(scope="module", params=MODELS)
def run(request, trained_workspace):
    """Every stage that draws a figure, run once in a trained workspace of each model, every figure recorded."""
    from stages.evaluate import evaluate
    from stages.preprocess import preprocess
    from stages.robustness import robustness
    from stages.visualize import visualize

    model = request.param
    root = trained_workspace(model)
    artifacts = Artifacts(root)
    params_file = root / "params.yaml"
    params = yaml.safe_load(params_file.read_text())

    def section(name, rules):
        return load_params({name: rules}, params_file)[name]

    results = []
    with pytest.MonkeyPatch.context() as patch:
        figures = capture_figures(patch)
        real_model_stimuli = gradient_ascent.model_stimuli

        def recording_model_stimuli(*args, **kwargs):
            layers, found = real_model_stimuli(*args, **kwargs)
            results.extend(found)
            return layers, found

        patch.setattr(gradient_ascent, "model_stimuli", recording_model_stimuli)
        # `dvc plots diff` needs a Git repository and seconds; the report's own figure does not
        patch.setattr(cifar.reporting.report, "write_plots_html", lambda base, out_dir: None)
        preprocess(section("preprocess", PREPROCESS), artifacts, progress=quiet)  # as trained: the same seed
        evaluate(section("evaluate", EVALUATE), params["tta"][model], artifacts)
        robustness({**section("robustness", ROBUSTNESS), "max_images": None}, artifacts, progress=quiet)
        visualize({**section("visualize", VISUALIZE), "iterations": ITERATIONS}, artifacts, progress=quiet)
        cifar.reporting.report.build_report("", artifacts)
    arrays, classes = artifacts.load_prepared()
    assert classes == CLASSES  # the generated dataset's names, as its archive lists them
    fraction = section("evaluate", EVALUATE)["tta_fraction"]  # the views for the least confident images only
    probabilities = probabilities_by_hand(artifacts.model, arrays["x_test"], params["tta"][model], fraction=fraction)
    return Run(model, artifacts, params, figures, results, classes, arrays, probabilities)


PREDICTION_TITLE = re.compile(r"pred: (?P<predicted>.+)\nscore: (?P<score>\S+)\ntrue: (?P<true>.+)")
STIMULUS_LABEL = re.compile(r"(?P<name>.+?)(: (?P<live>\S+)| dead \((?P<dead>\S+)\))")


def parsed_titles(titles):
    """[(predicted class, score, true class)] of prediction-style titles."""
    found = [PREDICTION_TITLE.fullmatch(title) for title in titles]
    assert None not in found, titles
    return [(m["predicted"], float(m["score"]), m["true"]) for m in found]


def assert_titles_say_the_model_s_predictions(titles, indices, run):
    """Each title names the model's predicted class for its image, the class's probability and the true class."""
    top = run.probabilities.max(axis=1)
    for (predicted, score, true), i in zip(parsed_titles(titles), indices, strict=True):
        assert predicted == run.classes[run.predicted[i]]
        assert score == pytest.approx(top[i], abs=SCORE_ROUNDING)
        assert true == run.classes[run.arrays["y_test"][i]]


def matrix_by_name(ax):
    """{(y-axis class, x-axis class): value} of the matrix an axes shows, read through its tick labels."""
    shown = shown_image(ax)
    rows, columns = tick_labels(ax, "y"), tick_labels(ax, "x")
    assert len(rows) == shown.shape[0] and len(columns) == shown.shape[1]
    return {(rows[r], columns[c]): shown[int(r), int(c)] for r in rows for c in columns}


# preprocess


def test_samples_show_training_images_titled_with_their_class(run):
    cells = grid_cells(run.figure(run.artifacts.samples_figure))
    x_train, y_train = run.arrays["x_train"], run.arrays["y_train"]
    assert len(cells) == min(16, len(x_train))
    shown = which_images([image for image, _ in cells], x_train)
    assert len(set(shown)) == len(shown)
    titles = [title for _, title in cells]
    assert len(set(titles)) > 1  # several classes: a title on the wrong image would show
    assert titles == [run.classes[y_train[i]] for i in shown]


# evaluate


def test_confusion_matrix_is_scikit_learn_s_of_the_model_s_predictions(run):
    fig = run.figure(run.artifacts.confusion_figure)
    (ax,) = image_axes(fig)
    y_test = run.arrays["y_test"]
    expected = confusion_matrix(y_test, run.predicted, labels=range(len(run.classes)))
    assert not np.array_equal(expected, expected.T)  # a transposed matrix would differ
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("True label", "Predicted label")
    # rows the true classes, columns the predicted, both in the dataset's order
    assert list(tick_labels(ax, "y").values()) == run.classes == list(tick_labels(ax, "x").values())
    shown = matrix_by_name(ax)
    assert shown == {(t, p): expected[i, j] for i, t in enumerate(run.classes) for j, p in enumerate(run.classes)}
    # the number written in each cell is that cell's count
    written = {(round(y), round(x)): int(text) for x, y, text in texts(ax)}
    assert written == {(i, j): expected[i, j] for i in range(len(run.classes)) for j in range(len(run.classes))}


def dvc_confusion_plot(confusion_csv):
    """(the Vega-Lite spec DVC draws for dvc.yaml's confusion plot, its data points) from the stage's CSV."""
    from dvc.render.converter.vega import VegaConverter
    from dvc_render.vega import VegaRenderer

    plots = yaml.safe_load((PROJECT / "dvc.yaml").read_text())["plots"]
    (definition,) = [
        p for plot in plots if isinstance(plot, dict) for p in plot.values() if p.get("template") == "confusion"
    ]
    (source,) = definition["y"]
    rows = list(csv.DictReader(io.StringIO(confusion_csv.read_text())))
    points, properties = VegaConverter(source, {source: rows}, definition).flat_datapoints("workspace")
    return VegaRenderer(points, source, **properties).get_filled_template(), points


def test_dvc_s_confusion_plot_and_the_png_show_the_same_matrix_the_same_way(run):
    spec, points = dvc_confusion_plot(run.artifacts.confusion_data)
    x, y = spec["spec"]["encoding"]["x"], spec["spec"]["encoding"]["y"]
    (ax,) = image_axes(run.figure(run.artifacts.confusion_figure))
    assert (x["title"], y["title"]) == (ax.get_xlabel(), ax.get_ylabel())
    # DVC counts the rows per (y value, x value); the PNG's cell at the same tick labels holds the same count
    counts = Counter((point[y["field"]], point[x["field"]]) for point in points)
    shown = matrix_by_name(ax)
    assert {cell: value for cell, value in shown.items() if value} == counts
    assert any(row != column for row, column in counts)  # off-diagonal cells: a transposition would show


def test_many_classes_are_a_heatmap_of_each_true_class_s_fractions():
    rng = np.random.default_rng(3)
    classes = [f"class_{k:03d}" for k in range(100)]
    y_true = rng.integers(0, 99, 3000)  # the last class has no test images: its row is all 0
    predicted = np.where(rng.random(3000) < 0.6, y_true, rng.integers(0, 100, 3000))
    counts = confusion_matrix(y_true, predicted, labels=range(100))
    fig = confusion_figure(counts, classes)
    (ax,) = image_axes(fig)
    assert (ax.get_ylabel(), ax.get_xlabel()) == ("True label", "Predicted label")
    assert list(tick_labels(ax, "y").values()) == classes == list(tick_labels(ax, "x").values())
    by_hand = {}
    for i, true in enumerate(classes):
        members = y_true == i
        for j, guess in enumerate(classes):
            by_hand[true, guess] = np.mean(predicted[members] == j) if members.any() else 0.0
    shown = matrix_by_name(ax)
    assert shown.keys() == by_hand.keys()
    np.testing.assert_allclose([shown[cell] for cell in by_hand], list(by_hand.values()), atol=1e-12)
    assert ax.images[0].get_clim() == (0, 1)
    assert f"accuracy {np.mean(predicted == y_true):.3f}" in ax.get_title()


def test_prediction_grid_shows_test_images_titled_with_the_model_s_prediction(run):
    cells = grid_cells(run.figure(run.artifacts.predictions_figure))
    shown = which_images([image for image, _ in cells], run.arrays["x_test"])
    assert len(shown) == 16 and len(set(shown)) == 16
    titles = [title for _, title in cells]
    assert len(set(titles)) > 1
    assert_titles_say_the_model_s_predictions(titles, shown, run)


def bins_by_definition(confidence, correct, bins=15):
    """[(lower edge, images, accuracy or NaN, mean confidence or NaN)] of equal-width confidence bins (lo, hi],
    the first [0, hi] (Guo et al., 2017)."""
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        members = ((confidence > lo) | (lo == 0)) & (confidence <= hi)
        if members.any():
            out.append((lo, members.sum(), correct[members].mean(), confidence[members].mean()))
        else:
            out.append((lo, 0, np.nan, np.nan))
    return out


def test_reliability_diagram_bars_are_each_confidence_bin_s_accuracy_and_size(run):
    fig = run.figure(run.artifacts.reliability_figure)
    top, bottom = fig.axes
    confidence, correct = run.probabilities.max(axis=1), run.predicted == run.arrays["y_test"]
    expected = bins_by_definition(confidence, correct)
    filled = [(count, accuracy, mean) for _, count, accuracy, mean in expected if count]
    assert any(accuracy != pytest.approx(mean, abs=1e-3) for _, accuracy, mean in filled)  # not calibrated
    accuracy_bars, count_bars = bars(top), bars(bottom)
    assert len(accuracy_bars) == len(count_bars) == len(expected)
    for (x, y, width, height), (lo, _, accuracy, _) in zip(accuracy_bars, expected):
        assert (x, y, width) == pytest.approx((lo, 0, 1 / 15))
        np.testing.assert_allclose(height, accuracy)  # NaN (no bar) for an empty bin
    for (x, y, width, height), (lo, count, _, _) in zip(count_bars, expected):
        assert (x, y, width, height) == pytest.approx((lo, 0, 1 / 15, count))
    assert top.get_ylabel() == "accuracy" and bottom.get_ylabel() == "images"
    x, y = lines(top)["calibrated"]
    assert x.tolist() == y.tolist() == [0, 1]
    ece = sum(count / len(confidence) * abs(accuracy - mean) for count, accuracy, mean in filled)
    assert float(re.search(r"ECE (\S+),", top.get_title())[1]) == pytest.approx(ece, abs=1e-4)


def bar_by_label(ax):
    """{tick label: bar length} of a horizontal bar chart: each bar read with the label at its height."""
    labels = tick_labels(ax, "y")
    found = {}
    for _, y, width, height in bars(ax):
        (label,) = [text for position, text in labels.items() if position == pytest.approx(y + height / 2)]
        assert label not in found, f"two bars at {label}"
        found[label] = width
    return found


def recall_by_name(true, predicted, classes):
    """{class name: fraction of its test images predicted as it}, NaN for a class without test images."""
    return {name: np.mean(predicted[true == k] == k) if np.any(true == k) else np.nan for k, name in enumerate(classes)}


def assert_bars_are_recall_by_name(ax, expected, classes):
    assert len(set(v for v in expected.values() if v == v)) > 1  # classes differ: a permutation would show
    shown = bar_by_label(ax)
    assert shown.keys() == set(classes)
    for name, length in shown.items():
        np.testing.assert_allclose(length, expected[name], err_msg=name)


def test_per_class_bars_are_each_class_s_recall_by_its_name(run):
    ax = run.figure(run.artifacts.per_class_accuracy_figure).axes[0]
    expected = recall_by_name(run.arrays["y_test"], run.predicted, run.classes)
    assert_bars_are_recall_by_name(ax, expected, run.classes)
    assert ax.get_xlim() == (0, 1)


def test_per_class_bars_keep_their_names_when_every_class_scores_differently():
    rng = np.random.default_rng(0)
    classes = ["ant", "bee", "cow", "doe", "eel", "fox", "gnu"]
    true = np.repeat(np.arange(6), 10)  # "gnu" has no test images
    predicted = np.where(np.arange(60) % 10 < true + 2, true, (true + 1) % 7)  # recall 0.2, 0.3, ..., 0.7
    rng.shuffle(order := np.arange(60))
    true, predicted = true[order], predicted[order]
    expected = recall_by_name(true, predicted, classes)
    assert len(set(list(expected.values())[:6])) == 6 and np.isnan(expected["gnu"])
    accuracy = np.array([expected[name] for name in classes])  # the stage's input: recall in class order
    assert_bars_are_recall_by_name(per_class_accuracy_figure(accuracy, classes).axes[0], expected, classes)


def test_mistakes_grid_shows_the_most_confident_mistakes_first(run):
    cells = grid_cells(run.figure(run.artifacts.mistakes_figure))
    y_test, predicted = run.arrays["y_test"], run.predicted
    confidence = run.probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != y_test)
    assert len(cells) == min(run.params["evaluate"]["mistakes"], len(wrong)) > 1
    shown = which_images([image for image, _ in cells], run.arrays["x_test"])
    assert set(shown) <= set(wrong) and len(set(shown)) == len(shown)
    # the most confident first (near ties aside: the stage computes in float32), and none more confident left out
    confidences = confidence[shown]
    assert confidences[0] > confidences[-1]  # the order matters
    assert np.all(np.diff(confidences) <= 1e-5)
    left_out = np.setdiff1d(wrong, shown)
    assert not len(left_out) or confidence[left_out].max() <= confidences[-1] + 1e-5
    assert_titles_say_the_model_s_predictions([title for _, title in cells], shown, run)


def gradcam_panels(fig):
    """[(image, heatmap, title)] of a Grad-CAM figure's panels."""
    return [(shown_image(ax, 0), shown_image(ax, 1), ax.get_title()) for ax in image_axes(fig)]


@pytest.mark.parametrize(
    "figure, images_of", [("gradcam_figure", "predictions_figure"), ("gradcam_mistakes_figure", "mistakes_figure")]
)
def test_gradcam_explains_each_grid_image_for_the_class_predicted(run, figure, images_of):
    from cifar.evaluation.gradcam import grad_cam
    from cifar.network.trained import load_trained_model

    panels = gradcam_panels(run.figure(getattr(run.artifacts, figure)))
    x_test = run.arrays["x_test"]
    grid = which_images([image for image, _ in grid_cells(run.figure(getattr(run.artifacts, images_of)))], x_test)
    shown = which_images([image for image, _, _ in panels], x_test)
    assert shown == grid  # the grid's images, in its order
    predicted = run.predicted[shown]
    # each panel reads alone, as its grid's cell: the prediction, its score and the true class
    assert_titles_say_the_model_s_predictions([title for _, _, title in panels], shown, run)
    heatmaps = grad_cam(load_trained_model(run.artifacts.model), x_test[shown], predicted)
    np.testing.assert_allclose(np.stack([heatmap for _, heatmap, _ in panels]), heatmaps, atol=1e-5)


# robustness


def test_robustness_figure_draws_each_corruption_s_accuracy_per_severity(run):
    record = json.loads(run.artifacts.robustness_record.read_text())
    ax = run.figure(run.artifacts.robustness_figure).axes[0]
    drawn = lines(ax)
    corruptions = record["corruptions"]
    assert drawn.keys() == {name.replace("_", " ") for name in corruptions} | {"no corruption"}
    for name, by_severity in corruptions.items():
        x, y = drawn[name.replace("_", " ")]
        assert x.tolist() == [1, 2, 3, 4, 5]
        assert y.tolist() == [by_severity[f"severity_{s}"] for s in range(1, 6)]
    assert len({tuple(values.values()) for values in corruptions.values()}) > 1  # a name on another's line shows
    # the clean line: the model's accuracy on every test image (max_images: null), without test-time augmentation
    model = keras.saving.load_model(run.artifacts.model, compile=False)
    clean = np.mean(model.predict(run.arrays["x_test"], verbose=0).argmax(axis=1) == run.arrays["y_test"])
    assert drawn["no corruption"][1].tolist() == pytest.approx([clean, clean], abs=1e-9)
    assert record["clean_accuracy"] == pytest.approx(clean, abs=1e-9)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("severity", "test accuracy")


# visualize


def stimulus_labels(ax, size):
    """[(label name, activation, dead, the tile above the label)] of a stimuli mosaic."""
    mosaic = shown_image(ax)
    found = []
    for x, y, text in texts(ax):
        m = STIMULUS_LABEL.fullmatch(text)
        assert m, text
        # each label is centred just under its tile
        left, below = int(round(x - size / 2)), int(np.floor(y))
        tiles = [mosaic[top : top + size, left : left + size] for top in range(below - size - 2, below - size + 1)]
        found.append((m["name"], float(m["live"] or m["dead"]), m["dead"] is not None, tiles))
    return found


def assert_tiles_and_labels(fig, images, activations, names):
    """Each label names a filter (or class) and its activation, over that one's stimulus, grey when dead."""
    (ax,) = fig.axes
    labels = stimulus_labels(ax, images.shape[1])
    assert sorted(name for name, *_ in labels) == sorted(names)
    for name, activation, dead, tiles in labels:
        k = names.index(name)
        assert dead == (activations[k] <= 0), name
        # printed with 3 significant digits (2 when dead)
        assert activation == pytest.approx(activations[k], rel=5e-2 if dead else 5e-3, abs=1e-6), name
        expected = np.full_like(images[k], 128) if dead else images[k]
        assert any(np.array_equal(tile, expected) for tile in tiles), f"{name} is not over its stimulus"
    colours = {text.get_text(): text.get_color() for text in ax.texts}
    assert all((colours[t] == "tab:red") == ("dead" in t) for t in colours)


def test_stimuli_figures_show_each_filter_s_stimulus_and_its_recorded_activation(run):
    record = json.loads(run.artifacts.stimuli_record.read_text())
    stats = run.artifacts.load_stats()
    assert len(run.stimuli) == len(record["layers"]) + 1
    for (images, _, final), layer in zip(run.stimuli, record["layers"]):
        activations = [record["layers"][layer]["activations"][str(i)] for i in range(len(final))]
        np.testing.assert_allclose(activations, final, atol=1e-6)  # the record is what the ascent reached
        fig = run.figure(run.artifacts.stimuli_dir / f"{layer}.png")
        assert layer in fig._suptitle.get_text() and f"({len(final)} filters)" in fig._suptitle.get_text()
        rgb = gradient_ascent.image_values_to_rgb(images, stats["mean"], stats["std"])
        assert_tiles_and_labels(fig, rgb, activations, [f"#{i}" for i in range(len(final))])


def test_classes_stimuli_are_labelled_with_the_class_names(run):
    record = json.loads(run.artifacts.stimuli_record.read_text())
    stats = run.artifacts.load_stats()
    images, _, final = run.stimuli[-1]
    assert list(record["classes"]) == run.classes
    np.testing.assert_allclose(list(record["classes"].values()), final, atol=1e-6)
    fig = run.figure(run.artifacts.stimuli_dir / "classes.png")
    assert "class" in fig._suptitle.get_text()
    rgb = gradient_ascent.image_values_to_rgb(images, stats["mean"], stats["std"])
    assert_tiles_and_labels(fig, rgb, list(record["classes"].values()), run.classes)


def test_dead_stimuli_are_grey_tiles_labelled_dead():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (11, 32, 32, 3), dtype=np.uint8)
    activations = rng.normal(size=11)
    activations[[2, 9]] = [0.0, -0.25]  # dead: 0 counts as dead
    assert 0 < np.sum(activations <= 0) < 11
    fig = stimuli_figure(images, activations, "t")
    assert_tiles_and_labels(fig, images, list(activations), [f"#{i}" for i in range(11)])


def test_kernels_figure_shows_each_first_layer_kernel_scaled_to_its_range(run):
    model = keras.saving.load_model(run.artifacts.model, compile=False)
    kernel = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)).get_weights()[0]
    fig = run.figure(run.artifacts.kernels_figure)
    panels = image_axes(fig)
    assert len(panels) == kernel.shape[-1]
    for i, ax in enumerate(panels):
        assert ax.get_title() == f"#{i}"
        tile = kernel[..., i]
        np.testing.assert_allclose(shown_image(ax), (tile - tile.min()) / (tile.max() - tile.min()), atol=1e-6)


# report


def dvclive_history(path):
    """The values of one of DVCLive's TSV files (step, value), read here."""
    rows = list(csv.reader(io.StringIO(path.read_text()), delimiter="\t"))
    assert rows[0][0] == "step"
    return [float(row[1]) for row in rows[1:] if row]


def test_training_curves_are_dvclive_s_history_per_epoch(run):
    fig = run.figure(run.artifacts.curves_figure)
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    for ax in fig.axes:
        drawn = lines(ax)
        assert drawn.keys() == {"train (this run)", "test (this run)"}  # no base: report ran without one
        for split, label in (("train", "train (this run)"), ("test", "test (this run)")):
            values = dvclive_history(run.artifacts.history_dir / split / f"{ax.get_title()}.tsv")
            x, y = drawn[label]
            assert x.tolist() == list(range(1, len(values) + 1))
            np.testing.assert_allclose(y, values)


def test_a_base_revision_s_test_curves_are_read_under_dvclive_s_former_eval_name_too(tmp_path, monkeypatch):
    import subprocess

    from cifar.reporting.report import history_at

    monkeypatch.chdir(tmp_path)
    history = Artifacts().history_dir
    (history / "eval").mkdir(parents=True)
    (history / "eval/loss.tsv").write_text("step\tloss\n0\t2.5\n1\t2.0\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "before the rename"], check=True)
    assert history_at("HEAD", "test/loss.tsv", Artifacts()) == "step\tloss\n0\t2.5\n1\t2.0\n"
    assert history_at("HEAD", "test/accuracy.tsv", Artifacts()) is None
    (history / "test").mkdir()
    (history / "test/loss.tsv").write_text("step\tloss\n0\t1.5\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "after"], check=True)
    assert history_at("HEAD", "test/loss.tsv", Artifacts()) == "step\tloss\n0\t1.5\n"  # its own name first


def test_training_curves_draw_the_base_run_dashed():
    current = {"train/loss.tsv": [2.0, 1.5], "test/loss.tsv": [2.2, 1.9], "train/accuracy.tsv": [0.3, 0.5]}
    base = {"train/loss.tsv": [2.1, 1.2, 0.9], "test/accuracy.tsv": [0.2, 0.4, 0.6]}
    fig = curves_figure(current, base, "main")
    for ax, metric in zip(fig.axes, ("loss", "accuracy")):
        drawn = {line.get_label(): (line.get_linestyle(), line.get_ydata().tolist()) for line in ax.get_lines()}
        expected = {}
        for split, name in (("train", "train"), ("test", "test")):
            if f"{split}/{metric}.tsv" in current:
                expected[f"{name} (this run)"] = ("-", current[f"{split}/{metric}.tsv"])
            if f"{split}/{metric}.tsv" in base:
                expected[f"{name} (main)"] = ("--", base[f"{split}/{metric}.tsv"])
        assert drawn == expected
