"""The end-to-end runs' pieces: the tiny pipeline's params, `dvc repro` of every stage, and every output
it writes (cifar/core/artifacts.py: OUTS, which equals dvc.yaml's outs) checked for its content against
an independent computation.

The figures' content is tests/test_figures.py's (captured from matplotlib before saving); here each
PNG must decode to a picture that is not blank. Numbers from a model computing in bfloat16 are
bounded against its float32 copy (tests/bfloat16_bounds.py)."""

import csv
import json
import shutil

import keras
import numpy as np
import yaml
from PIL import Image

from benchmarks.recipes import TINY as RECIPES
from benchmarks.workspace import PROJECT, Repo, scratch_repository
from cifar.core.artifacts import OUTS, Artifacts
from cifar.core.tensorflow_log import without_log_lines
from cifar.data.prepare import normalized_stats
from cifar.export.classifiers import load_classifier
from cifar.network.trained import computes_in_bfloat16, float32_copy, load_trained_model
from tests.datagen import CLASSES, write_cifar_archive
from tests.helpers import assert_test_metrics_are_the_models

TINY_PIPELINE = {
    "visualize": {"iterations": 3},
    "robustness": {"max_images": 40},
    "export": {"representative_images": 20, "latency_runs": 5},
    "preprocess": {"max_train_images": 100, "max_test_images": 40},
    "train": {"precision": "float32"},
    "seed_cnn": {"epochs": 1, "batch_size": 16},
    # the airbench models shrunk (their defaults' batches are larger than the tiny data), for a test that
    # switches train.model
    "airbench94_muon": RECIPES["airbench94_muon"],
    "airbench94": RECIPES["airbench94"],
}

# Every stage of dvc.yaml, in its order: a stage added later is run by the end-to-end tests too.
STAGES = list(yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"])


def ran_stages(output):
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def precision_for(cpuinfo):
    """What `train.precision: auto` must choose on a Linux machine without a GPU (the suite's), read
    from the CPU's flags here rather than by the project's code: bfloat16 where it has the units."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags = set(value.split())
            break
    return "mixed_bfloat16" if flags & {"avx512_bf16", "amx_bf16"} else "float32"


def committed_baseline(root):
    """A repo in `root`/repo whose pipeline ran once (TINY_PIPELINE) on a generated archive, the results
    committed on main: (its Repo, the archive). The DVC tests' shared starting point."""
    archive = root / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = scratch_repository(root / "repo", archive, **TINY_PIPELINE)
    repo.dvc("repro")
    repo.commit("baseline run")
    return repo, archive


def private_copy(repo, root):
    """A copy of `repo` (its DVC cache included) in `root`/repo."""
    shutil.copytree(repo.path, root / "repo", symlinks=True)
    return Repo(root / "repo")


def repro_every_stage(tmp_path, precision, expected_precision, env=None):
    """`dvc repro` of every stage with `train.precision: precision` on tiny data; every output checked
    for content (tests/pipeline_outputs.py), the model trained in `expected_precision`.

    `env`: variables for the stages."""
    archive = tmp_path / "tiny-cifar.tar.gz"
    written = write_cifar_archive(archive)
    repo = scratch_repository(tmp_path / "repo", archive, **{**TINY_PIPELINE, "train": {"precision": precision}})
    result = repo.dvc("repro", env=env)
    assert ran_stages(result.stdout) == STAGES
    # the user's terminal: the stages' own lines, not one of TensorFlow's (cifar/core/tensorflow_log.py)
    for stream in (result.stdout, result.stderr):
        assert without_log_lines(stream.encode()) == stream.encode(), stream
    root = repo.path
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    assert set(lock) == set(STAGES)
    assert {out["path"] for entry in lock.values() for out in entry["outs"]} == set(OUTS.values())
    check_every_output(root, archive, written, expected_precision)
    return repo


def assert_picture(path):
    """A PNG that decodes, and shows something: not a single colour."""
    with Image.open(path) as image:
        assert image.format == "PNG", path
        pixels = np.asarray(image.convert("RGB"))
    assert pixels.shape[0] > 50 and pixels.shape[1] > 50 and pixels.std() > 5, path


def pairs(images, labels):
    return sorted(zip((image.tobytes() for image in images), labels.tolist()))


def check_every_output(root, source, written, machine_precision):
    """Each of OUTS in workspace `root`, fetched from archive `source` holding `written`
    (x_train, y_train, x_test, y_test), trained in `machine_precision` (what train.precision resolved to)."""
    artifacts = Artifacts(root)
    params = yaml.safe_load((root / "params.yaml").read_text())
    x_train, y_train, x_test, y_test = (
        np.load(artifacts.prepared_array(n)) for n in ("x_train", "y_train", "x_test", "y_test")
    )
    checked = set()

    def check(*names):
        checked.update(names)

    # fetch: the archive, byte for byte
    assert artifacts.raw_dataset.read_bytes() == source.read_bytes()
    check("raw_dir")
    # preprocess: class-balanced subsets of the archive's images, each with its own label
    sizes = params["preprocess"]
    assert len(y_train) == min(sizes["max_train_images"], len(written[1]))
    assert len(y_test) == min(sizes["max_test_images"], len(written[3]))
    archive_train, archive_test = dict(pairs(written[0], written[1])), dict(pairs(written[2], written[3]))
    assert all(archive_train[image] == label for image, label in pairs(x_train, y_train))
    assert all(archive_test[image] == label for image, label in pairs(x_test, y_test))
    assert np.bincount(y_train, minlength=10).tolist() == [len(y_train) // 10] * 10
    check("x_train", "y_train", "x_test", "y_test")
    assert json.loads(artifacts.prepared_classes.read_text()) == CLASSES
    assert json.loads(artifacts.prepared_stats.read_text()) == normalized_stats(x_train)
    assert_picture(artifacts.samples_figure)
    fitting = {key: params["preprocess"][key] for key in ("aspect", "background")}
    assert json.loads(artifacts.prepared_input.read_text()) == fitting
    check("prepared_classes", "prepared_stats", "prepared_input", "samples_figure")

    # train: the model, its classes, DVCLive's record of the run and of what `auto` resolved
    model = load_trained_model(artifacts.model)
    assert computes_in_bfloat16(model) == (machine_precision == "mixed_bfloat16")
    assert model.output_shape == (None, 10)
    assert json.loads(artifacts.model_classes.read_text()) == CLASSES
    assert json.loads(artifacts.model_input.read_text()) == fitting  # for predict
    logged = yaml.safe_load((artifacts.train_reports / "params.yaml").read_text())
    assert logged["precision"] == machine_precision
    epochs = params[params["train"]["model"]]["epochs"]
    for split in ("train", "test"):
        rows = (artifacts.history_dir / split / "loss.tsv").read_text().splitlines()
        assert len(rows) == 1 + epochs and all(np.isfinite(float(row.split("\t")[-1])) for row in rows[1:])
    check("model", "model_classes", "model_input", "train_reports")

    # evaluate: every number from the model's predictions (bfloat16: bounded by its float32 copy's)
    metrics = json.loads(artifacts.metrics.read_text())
    probabilities, labels, sure = assert_test_metrics_are_the_models(root, metrics)
    predicted = probabilities.argmax(axis=1)
    rows = list(csv.DictReader(artifacts.confusion_data.open()))
    assert [row["actual"] for row in rows] == [CLASSES[k] for k in labels]
    assert [row["predicted"] for row, ok in zip(rows, sure) if ok] == [CLASSES[k] for k in predicted[sure]]
    per_class = {
        row["class"]: float(row["accuracy"]) for row in csv.DictReader(artifacts.per_class_accuracy_data.open())
    }
    assert list(per_class) == CLASSES
    for k, name in enumerate(CLASSES):
        of_class = labels == k
        if sure[of_class].all():
            assert per_class[name] == round(float(np.mean(predicted[of_class] == k)), 6), name
            assert metrics["per_class"][name]["recall"] == round(float(np.mean(predicted[of_class] == k)), 6), name
    bins = list(csv.DictReader(artifacts.reliability_data.open()))
    assert sum(int(row["images"]) for row in bins) == len(labels)
    for name in (
        "confusion",
        "predictions",
        "reliability",
        "per_class_accuracy",
        "mistakes",
        "gradcam",
        "gradcam_mistakes",
    ):
        assert_picture(getattr(artifacts, f"{name}_figure"))
    check("metrics", "confusion_data", "per_class_accuracy_data", "reliability_data", "confusion_figure")
    check("predictions_figure", "reliability_figure", "per_class_accuracy_figure", "mistakes_figure")
    check("gradcam_figure", "gradcam_mistakes_figure")

    # robustness: the CSV is the record's table; the mean is the mean of the table
    record = json.loads(artifacts.robustness_record.read_text())
    table = list(csv.DictReader(artifacts.robustness_data.open()))
    values = [
        [record["corruptions"][name][f"severity_{int(row['severity'])}"] for name in record["corruptions"]]
        for row in table
    ]
    np.testing.assert_allclose([[float(row[name]) for name in record["corruptions"]] for row in table], values)
    assert abs(record["mean_corruption_accuracy"] - np.mean(values)) <= 1e-6
    assert 0 <= record["clean_accuracy"] <= 1
    assert_picture(artifacts.robustness_figure)
    check("robustness_record", "robustness_data", "robustness_figure")

    # export: each format's probabilities against the float32 copy of the weights it was converted from
    reference = float32_copy(model).predict(x_test, verbose=0).astype(np.float64)
    exported = json.loads(artifacts.export_record.read_text())
    assert exported["trained_precision"] == machine_precision
    keras_top = load_classifier(artifacts.model).predict(x_test).argmax(axis=1)
    for name, path in (("saved_model", artifacts.saved_model), ("tflite_float32", artifacts.tflite_float)):
        probabilities = load_classifier(path).predict(x_test)
        np.testing.assert_allclose(probabilities, reference, atol=1e-5)  # float32 both: measured 1e-7
        assert exported[name]["accuracy"] == round(float(np.mean(probabilities.argmax(axis=1) == y_test)), 6)
        assert exported[name]["agreement_with_keras"] == round(
            float(np.mean(probabilities.argmax(axis=1) == keras_top)), 6
        )
    int8 = load_classifier(artifacts.tflite_int8).predict(x_test)
    assert np.abs(int8 - reference).max() <= 0.1  # int8 rounding, tests/test_export.py measured 0.03
    assert exported["tflite_int8"]["accuracy"] == round(float(np.mean(int8.argmax(axis=1) == y_test)), 6)
    assert json.loads(artifacts.export_classes.read_text()) == CLASSES
    assert json.loads(artifacts.export_input.read_text()) == fitting
    check("saved_model", "tflite_float", "tflite_int8", "export_classes", "export_input", "export_record")

    # visualize: a record and a figure per conv layer of the model, and one for the classes
    stimuli = json.loads(artifacts.stimuli_record.read_text())
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # one per conv layer, named after the activation that follows it (seed_cnn's LeakyReLU, fast's GELU)
    assert all(model.get_layer(name).output.shape[-1] == entry["filters"] for name, entry in stimuli["layers"].items())
    assert [entry["filters"] for entry in stimuli["layers"].values()] == [layer.filters for layer in convs]
    assert list(stimuli["classes"]) == CLASSES
    for name in [*stimuli["layers"], "classes"]:
        assert_picture(artifacts.stimuli_dir / f"{name}.png")
    assert_picture(artifacts.kernels_figure)
    check("stimuli_record", "stimuli_dir", "kernels_figure")

    assert checked == set(OUTS), f"outputs left unchecked: {sorted(set(OUTS) - checked)}"
