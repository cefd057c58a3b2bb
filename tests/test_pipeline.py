"""End to end: the real `dvc repro` on a tiny generated dataset in a throwaway git + DVC repo."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmarks.workspace import scratch_repository
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu
from cifar.network.trained import load_trained_model
from tests.datagen import (
    CLASSES,
    FINE_CLASSES,
    desktop_extras,
    encode_image,
    write_cifar100_archive,
    write_cifar_binary_archive,
    write_image_folder_archive,
)
from tests.pipeline_outputs import (
    STAGES,
    TINY_PIPELINE,
    precision_for,
    ran_stages,
    repro_every_stage,
)


@pytest.mark.slow
def test_dvc_repro_with_the_defaults_as_a_user_has_them_then_a_noop_and_an_evaluate_only_rerun(tmp_path):
    """`train.precision: auto`, the default, on whatever CPU runs the suite (bfloat16 on one with
    bfloat16 units): every output checked, and what `auto` chose against the machine's own flags.
    tests/test_pipeline_bfloat16.py runs the other precision, through `auto` shown the other kind of CPU."""
    expected = precision_for(Path("/proc/cpuinfo").read_text())
    repo = repro_every_stage(tmp_path, "auto", expected)
    root = repo.path
    logged = yaml.safe_load((Artifacts(root).train_reports / "params.yaml").read_text())
    assert logged["cpu"] == describe_cpu()
    metrics = json.loads(Artifacts(root).metrics.read_text())
    shown = json.loads(repo.dvc("metrics", "show", "--json").stdout)
    workspace_metrics = shown[""]["data"]["reports/metrics.json"]["data"]
    assert workspace_metrics == metrics

    second = repo.dvc("repro")
    assert ran_stages(second.stdout) == []
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."

    before = Artifacts(root).model.read_bytes()
    repo.set_params(evaluate={"seed": 5})
    third = repo.dvc("repro")
    assert ran_stages(third.stdout) == ["evaluate"]
    assert Artifacts(root).model.read_bytes() == before


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
    # centre-cropped pictures: the choice travels from preprocess to the model and its exports, for predict
    fitting = {"aspect": "crop", "background": "#336699"}
    repo = scratch_repository(
        tmp_path / "repo",
        tmp_path / name,
        **{**TINY_PIPELINE, "preprocess": {**TINY_PIPELINE["preprocess"], **sizes, **fitting}},
    )
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
    recorded = [
        Artifacts(root).load_input(path) for path in (Artifacts(root).model_input, Artifacts(root).export_input)
    ]
    assert recorded[0] == fitting and recorded[1] == (fitting if "export" in expected else {})
    image = root / "query.png"  # twice as wide as tall: predict crops its middle, as preprocess was told to
    query = np.random.default_rng(0).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    image.write_bytes(encode_image(query))
    predicted = json.loads(repo.run(sys.executable, "-m", "stages.predict", "--json", "--top", "3", str(image)).stdout)
    # the model's own top three on the middle 32x32 (float32: TINY_PIPELINE pins it), by class name
    expected = load_trained_model(Artifacts(root).model).predict(query[None, :, 16:48], verbose=0)[0]
    top = np.argsort(-expected, kind="stable")[:3]
    ranked = predicted["predictions"][str(image)]
    assert [row["class"] for row in ranked] == [classes[k] for k in top]
    np.testing.assert_allclose([row["probability"] for row in ranked], expected[top], atol=2e-6)
