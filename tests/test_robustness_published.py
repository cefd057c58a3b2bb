"""robustness.source: the published CIFAR-10-C read in place, from the tar, its extracted folder, or a download
descriptor served over loopback, on files in the published layout generated here (tests/datagen.py); every
broken set refused in one line, earlier outputs left as they were."""

import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.workspace import PROJECT, set_params
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params
from cifar.data import download
from stages.robustness import ROBUSTNESS, main, robustness
from tests import summaries
from tests.datagen import (
    CIFAR_C_CORRUPTIONS,
    CLASSES,
    COARSE_CLASSES,
    FINE_CLASSES,
    cifar_c_arrays,
    npy_bytes,
    write_cifar_c,
)
from tests.figures_seen import capture_figures, lines
from tests.helpers import keras_probabilities, serving

# As the CIFAR-10-C paper and RobustBench count them: the mean over these 15; the files hold 4 more
BENCHMARK = (
    *("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur"),
    *("snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression"),
)
EXTRA = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
# The model's classes.json in another order than CIFAR-10's official one (labels.npy's): mapped by name
MODEL_ORDER = CLASSES[3:] + CLASSES[:3]
EARLIER = {"robustness_record": b"{}\n", "robustness_data": b"earlier\n", "robustness_figure": b"earlier png"}


def quiet(message):
    pass


@pytest.fixture(scope="module")
def root(trained_workspace):
    """The shared trained seed_cnn workspace made as if it came from another copy of CIFAR-10, whose classes
    are in MODEL_ORDER: its last Dense layer's units, classes.json files and prepared labels reordered alike."""
    import keras

    root = trained_workspace("seed_cnn")
    artifacts = Artifacts(root)
    assert artifacts.load_classes() == artifacts.load_classes(artifacts.model_classes) == CLASSES
    order = [CLASSES.index(name) for name in MODEL_ORDER]  # new unit k is old unit order[k]
    model = keras.saving.load_model(artifacts.model, compile=False)
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)][-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel[:, order], bias[order]])
    model.save(artifacts.model)
    for path in (artifacts.model_classes, artifacts.prepared_classes):
        path.write_text(json.dumps(MODEL_ORDER))
    y_test = np.load(artifacts.y_test)
    np.save(artifacts.y_test, np.argsort(order)[y_test].astype(y_test.dtype))
    return root


@pytest.fixture(scope="module")
def published(root):
    """(the published files of the workspace's 100 test images: {file name: array}, the accuracy of every
    corruption at every severity by hand: {name: [5 values]}, the clean accuracy by hand)."""
    artifacts = Artifacts(root)
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    # as published: labels.npy holds the CIFAR-10 index (official order) of each image's class name
    arrays = cifar_c_arrays(x_test, [CLASSES.index(MODEL_ORDER[y]) for y in y_test])
    everything = np.concatenate([arrays[f"{name}.npy"] for name in CIFAR_C_CORRUPTIONS])
    names = [MODEL_ORDER[k] for k in keras_probabilities(artifacts, everything).argmax(axis=1)]
    truth = [CLASSES[label] for label in arrays["labels.npy"]]
    right = np.equal(names, truth * len(CIFAR_C_CORRUPTIONS)).reshape(len(CIFAR_C_CORRUPTIONS), 5, len(x_test))
    expected = {name: right[i].mean(axis=1).tolist() for i, name in enumerate(CIFAR_C_CORRUPTIONS)}
    clean = np.mean(keras_probabilities(artifacts, x_test).argmax(axis=1) == y_test)
    assert clean >= 0.5  # the reordered model still knows its classes, by their new indices
    return arrays, expected, clean


def settings(source):
    return {**load_params({"robustness": ROBUSTNESS}, PROJECT / "params.yaml")["robustness"], "source": str(source)}


def assert_the_published_record(artifacts, record, expected, clean, source):
    """The record, CSV and figure: every corruption at every severity, the means, as the model scores them."""
    assert record["source"] == str(source) and record["images_per_severity"] == 100
    assert list(record["corruptions"]) == [*BENCHMARK, *EXTRA]
    for name, values in expected.items():
        assert [record["corruptions"][name][f"severity_{s}"] for s in range(1, 6)] == pytest.approx(values, abs=1e-6)
    assert len({tuple(values) for values in expected.values()}) > 1  # the corruptions change predictions
    assert record["clean_accuracy"] == pytest.approx(clean, abs=1e-6)
    means = {
        "mean_benchmark_corruption_accuracy": BENCHMARK,
        "mean_extra_corruption_accuracy": EXTRA,
        "mean_corruption_accuracy": BENCHMARK + EXTRA,
    }
    for key, names in means.items():
        assert record[key] == pytest.approx(np.mean([expected[name] for name in names]), abs=1e-6), key
    assert record["mean_benchmark_corruption_accuracy"] != record["mean_corruption_accuracy"]
    assert json.loads(artifacts.robustness_record.read_text()) == record
    table = list(csv.DictReader(artifacts.robustness_data.open()))
    assert [row["severity"] for row in table] == ["1", "2", "3", "4", "5"]
    for name, values in expected.items():
        assert [float(row[name]) for row in table] == pytest.approx(values, abs=1e-6)


def assert_the_figure(fig, record):
    """Two panels, the 15 benchmark corruptions and the 4 extra ones, each line the record's values, the
    clean accuracy on both; each title says its mean."""
    assert len(fig.axes) == 2
    for ax, names, key in zip(
        fig.axes, (BENCHMARK, EXTRA), ("mean_benchmark_corruption_accuracy", "mean_extra_corruption_accuracy")
    ):
        drawn = lines(ax)
        assert drawn.keys() == {name.replace("_", " ") for name in names} | {"no corruption"}
        for name in names:
            x, y = drawn[name.replace("_", " ")]
            assert x.tolist() == [1, 2, 3, 4, 5]
            assert y.tolist() == [record["corruptions"][name][f"severity_{s}"] for s in range(1, 6)]
        assert drawn["no corruption"][1].tolist() == [record["clean_accuracy"]] * 2
        assert f"{len(names)} " in ax.get_title() and f"(mean {record[key]:.4f})" in ax.get_title()
        assert len(ax.get_legend().get_texts()) == len(names) + 1


@pytest.mark.parametrize("as_tar", [True, False], ids=["tar", "folder"])
def test_every_corruption_at_every_severity_scored_in_place(root, published, tmp_path, monkeypatch, as_tar):
    arrays, expected, clean = published
    source = write_cifar_c(tmp_path / ("CIFAR-10-C.tar" if as_tar else "CIFAR-10-C"), arrays, as_tar)
    before = {p for p in root.rglob("*") if p.is_file()}
    artifacts, messages = Artifacts(root), []
    figures = capture_figures(monkeypatch)
    record = robustness(settings(source), artifacts, progress=messages.append)
    assert_the_published_record(artifacts, record, expected, clean, source)
    assert_the_figure(figures[artifacts.robustness_figure.resolve()], record)
    # progress: one line per corruption and severity, in order, with the time left
    steps = [m for m in messages if m.startswith("[")]
    assert [m.split("]")[0] for m in steps] == [f"[{i}/95" for i in range(1, 96)]
    assert steps[0].startswith("[1/95] gaussian_noise severity 1: accuracy") and "s left)" in steps[-1]
    summaries.check_robustness(messages, record)
    # read in place: nothing unpacked, only the three outputs written
    outputs = {artifacts.robustness_record, artifacts.robustness_data, artifacts.robustness_figure}
    assert {p for p in root.rglob("*") if p.is_file()} - before <= outputs
    if as_tar:  # the report built from this record: its sentence, its rows, their figures
        from cifar.reporting.report import build_report

        if not artifacts.metrics.exists():
            artifacts.metrics.write_text(json.dumps({"accuracy": clean}))
        report = build_report("", artifacts).read_text()
        summaries.check_report_robustness(report, record)
        assert len(record["corruptions"]) == 19 and record["images_per_severity"] == len(arrays["labels.npy"]) // 5


def test_memory_maps_read_the_tar_where_its_members_lie(published, tmp_path):
    from cifar.robustness.published import open_source

    arrays, _, _ = published
    tar = write_cifar_c(tmp_path / "CIFAR-10-C.tar", arrays)
    found = open_source(str(tar), 1, 1, quiet)
    for name, array in found.arrays.items():
        assert isinstance(array, np.memmap) and Path(array.filename) == tar.resolve() and array.offset > 0
        np.testing.assert_array_equal(array, arrays[f"{name}.npy"])
    assert found.per_severity == 100


def test_each_severity_block_is_classified_a_chunk_at_a_time(tmp_path, monkeypatch):
    """Memory stays bounded: `predict` gets CHUNK images at a time, never across two severities' blocks, in the
    files' order; each severity's accuracy is over its own block."""
    from cifar.robustness import evaluation
    from cifar.robustness.published import open_source

    monkeypatch.setattr(evaluation, "CHUNK", 5)
    rng = np.random.default_rng(3)
    labels = np.arange(12) % 10
    arrays = cifar_c_arrays(rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), labels)
    found = open_source(str(write_cifar_c(tmp_path / "CIFAR-10-C.tar", arrays)), 1, 1, quiet)
    seen = []

    def predict(batch):  # class 0, always
        seen.append(batch)
        return np.eye(10)[np.zeros(len(batch), int)]

    results = evaluation.published_accuracy(predict, found, np.tile(labels, 5), quiet)
    assert [len(batch) for batch in seen] == [5, 5, 2] * 95
    everything = np.concatenate([arrays[f"{name}.npy"] for name in BENCHMARK + EXTRA])
    np.testing.assert_array_equal(np.concatenate(seen), everything)
    assert results == {name: [np.mean(labels == 0)] * 5 for name in BENCHMARK + EXTRA}


def test_a_download_descriptor_fetched_over_loopback_through_the_keras_cache(root, published, tmp_path, monkeypatch):
    arrays, expected, clean = published
    tar = write_cifar_c(tmp_path / "CIFAR-10-C.tar", arrays)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    cached = tmp_path / "keras_home" / "datasets" / "CIFAR-10-C.tar"
    artifacts = Artifacts(root)
    with serving(tar) as (handler, url):
        source = descriptor(tmp_path, url, "md5:" + md5(tar))
        record = robustness(settings(source), artifacts, progress=quiet)
        assert_the_published_record(artifacts, record, expected, clean, source)
        assert cached.read_bytes() == tar.read_bytes() and handler.requests == 1
        robustness(settings(source), artifacts, progress=quiet)
        assert handler.requests == 1  # the second run reads the Keras cache's verified copy


def test_a_wrong_checksum_downloads_nothing_and_leaves_earlier_outputs(root, published, tmp_path, monkeypatch, capsys):
    tar = write_cifar_c(tmp_path / "CIFAR-10-C.tar", published[0])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    with serving(tar) as (handler, url):
        source = descriptor(tmp_path, url, "md5:" + "0" * 32)
        err = refused(root, source, monkeypatch, capsys, retries=2)
        assert handler.requests == 1  # downloaded whole: the server would send the same bytes again
    assert err.startswith(f"error: {url}: downloaded whole, but its md5 is {md5(tar)}, not the expected {'0' * 32}")
    assert list((tmp_path / "keras_home" / "datasets").iterdir()) == []


def md5(path):
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def descriptor(folder, url, checksum):
    path = folder / "cifar-10-c.yaml"
    path.write_text(yaml.safe_dump({"url": url, "checksum": checksum}))
    return path


def refused(root, source, monkeypatch, capsys, **params):
    """The one error line of `python -m stages.robustness` with robustness.source = `source` in `root`, checked
    to be one line, exit status 2, and to leave the earlier outputs as they were."""
    artifacts = Artifacts(root)
    for name, content in EARLIER.items():
        getattr(artifacts, name).parent.mkdir(parents=True, exist_ok=True)
        getattr(artifacts, name).write_bytes(content)
    monkeypatch.chdir(root)
    set_params(root, robustness={"source": str(source), **params})
    capsys.readouterr()
    assert cli.run(main, []) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert {name: getattr(artifacts, name).read_bytes() for name in EARLIER} == EARLIER
    return err.strip()


def drop(name):
    return lambda arrays: {key: value for key, value in arrays.items() if key != name}


def replace(name, change):
    return lambda arrays: {**arrays, name: change(arrays[name])}


def object_array(array):
    """A .npy file of Python objects, as np.save(allow_pickle=True) writes it: never to be unpickled."""
    return npy_bytes(np.zeros(0)).replace(b"'<f8'", b"'|O' ") + b"\x80\x04N."


BROKEN = {
    "missing_corruption": (drop("frost.npy"), "missing frost.npy (CIFAR-10-C's and CIFAR-100-C's layout"),
    "wrong_shape": (
        replace("fog.npy", lambda a: a[:, :31, :31]),
        "fog.npy is uint8 (500, 31, 31, 3); expected uint8 (500, 32, 32, 3)",
    ),
    "wrong_dtype": (
        replace("snow.npy", lambda a: a.astype(np.float32)),
        "snow.npy is float32 (500, 32, 32, 3); expected uint8",
    ),
    "length_not_labels": (
        replace("spatter.npy", lambda a: a[:400]),
        "spatter.npy is uint8 (400, 32, 32, 3); expected uint8 (500,",
    ),
    "objects": (replace("zoom_blur.npy", object_array), "zoom_blur.npy: holds Python objects"),
    "not_npy": (replace("contrast.npy", lambda a: b"not an array"), "contrast.npy: not a readable .npy array"),
    "cifar_100_c": (  # on this 10-class model
        replace("labels.npy", lambda a: (a * 11).astype(np.uint8)),
        "labels.npy has labels from 0 to 99, so CIFAR-100-C with 100 classes; the model knows 10: it needs a model "
        "trained on CIFAR-100's 100 fine classes",
    ),
    "beyond_cifar_100": (
        replace("labels.npy", lambda a: (a * 12).astype(np.uint8)),
        "labels.npy has labels from 0 to 108, neither CIFAR-10-C's 0-9 nor CIFAR-100-C's 0-99",
    ),
    "labels_not_per_severity": (
        replace("labels.npy", lambda a: a[:-1]),
        "labels.npy is uint8 (499,); expected integer labels",
    ),
}


@pytest.mark.parametrize("as_tar", [True, False], ids=["tar", "folder"])
@pytest.mark.parametrize("broken", BROKEN)
def test_a_broken_set_is_refused_in_one_line(root, published, tmp_path, monkeypatch, capsys, broken, as_tar):
    change, message = BROKEN[broken]
    source = write_cifar_c(tmp_path / ("CIFAR-10-C.tar" if as_tar else "CIFAR-10-C"), change(published[0]), as_tar)
    assert message in refused(root, source, monkeypatch, capsys)


def test_a_truncated_or_compressed_tar_is_refused(root, published, tmp_path, monkeypatch, capsys):
    tar = write_cifar_c(tmp_path / "CIFAR-10-C.tar", published[0])
    whole = tar.read_bytes()
    tar.write_bytes(whole[: len(whole) // 2])
    assert "archive is truncated (member 'CIFAR-10-C/" in refused(root, tar, monkeypatch, capsys)
    compressed = tmp_path / "CIFAR-10-C.tar.gz"
    compressed.write_bytes(gzip.compress(whole))
    assert "not an uncompressed tar archive (CIFAR-10-C.tar or CIFAR-100-C.tar as published)" in refused(
        root, compressed, monkeypatch, capsys
    )
    assert "robustness.source: nowhere.tar does not exist" in refused(root, "nowhere.tar", monkeypatch, capsys)


@pytest.mark.parametrize(
    "classes, message",
    [
        (CLASSES[:-1] + ["lorry"], "the model knows no class truck of CIFAR-10-C; its classes.json holds airplane,"),
        (
            list(FINE_CLASSES),
            "so CIFAR-10-C with 10 classes; the model knows 100: it needs a model trained on CIFAR-10",
        ),
    ],
    ids=["unknown_class", "100_classes"],
)
def test_a_set_that_does_not_fit_the_model_is_refused(root, published, tmp_path, monkeypatch, capsys, classes, message):
    source = write_cifar_c(tmp_path / "CIFAR-10-C.tar", published[0])
    artifacts = Artifacts(root)
    original = artifacts.model_classes.read_text()
    artifacts.model_classes.write_text(json.dumps(classes))
    try:
        assert message in refused(root, source, monkeypatch, capsys)
    finally:
        artifacts.model_classes.write_text(original)


def test_cifar_100_c_labels_map_by_fine_class_name_onto_a_cifar_100_model_and_others_are_refused():
    from cifar.core.errors import PipelineError
    from cifar.robustness.published import PublishedSet, model_labels

    labels = np.tile(np.arange(100, dtype=np.uint8), 5)  # CIFAR-100-C's: the fine class indices, official order
    published = PublishedSet("CIFAR-100-C.tar", labels, {})
    another_order = list(reversed(FINE_CLASSES))  # a model whose copy of CIFAR-100 ordered its classes otherwise
    mapped = model_labels(published, another_order)
    assert [another_order[k] for k in mapped] == [FINE_CLASSES[k] for k in labels]
    refusals = {
        "coarse": (COARSE_CLASSES, "so CIFAR-100-C with 100 classes; the model knows 20: it needs a model trained on "
                   "CIFAR-100's 100 fine classes (preprocess.labels: fine; the 20 coarse do not map)"),
        "renamed": ([*FINE_CLASSES[:-1], "earthworm"], "the model knows no class worm of CIFAR-100-C"),
        "cifar_10": (CLASSES, "so CIFAR-100-C with 100 classes; the model knows 10"),
    }  # fmt: skip
    for name, (classes, message) in refusals.items():
        with pytest.raises(PipelineError) as refused_by:
            model_labels(published, list(classes))
        assert message in str(refused_by.value), name


def test_the_report_s_table_sets_the_published_means_beside_a_generated_base():
    from cifar.reporting.tables import flatten, robustness_table
    from cifar.robustness.evaluation import robustness_record

    values = [0.9 - 0.1 * severity for severity in range(5)]
    current = flatten(robustness_record(0.95, {name: values for name in BENCHMARK + EXTRA}, "x.tar", 7))
    base = flatten(robustness_record(0.9, {"contrast": [0.5] * 5, "fog": [0.4] * 5}))
    rows = {line.split(" | ")[0].strip("| "): line for line in robustness_table(current, base).splitlines()[2:]}
    assert list(rows)[1:20] == [name.replace("_", " ") for name in BENCHMARK + EXTRA]
    assert rows["no corruption"] == "| no corruption | 0.9500 | 0.9000 | +0.0500 |"
    assert rows["contrast"] == "| contrast | 0.7000 | 0.5000 | +0.2000 |"
    assert rows["frost"] == "| frost | 0.7000 | – |  |"
    assert rows["**mean of the 15 benchmark corruptions (the papers', RobustBench's)**"].endswith("| 0.7000 | – |  |")
    assert rows["**mean of the 4 extra corruptions**"].endswith("| 0.7000 | – |  |")
