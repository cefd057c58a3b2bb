import json
import re

import numpy as np
import pytest
from PIL import Image

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.network.trained import load_trained_model
from stages.predict import main
from tests.datagen import encode_image

# Printed probabilities against the model's own (float32, the same pixels, the same batch): JSON rounds
# them to 6 decimals (5e-7), the text to 3 (5e-4); measured 0 besides the rounding (AMD EPYC, 2 cores).
JSON_ROUNDING, TEXT_ROUNDING = 5e-7, 5e-4


@pytest.fixture(scope="module")
def trained(trained_workspace):
    """The shared tiny seed_cnn, trained in float32 (tests/helpers.py: SHARED_TRAINING)."""
    return trained_workspace("seed_cnn")


def write_images(folder):
    rng = np.random.default_rng(0)
    paths = {
        "small.png": encode_image(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)),
        "large.jpg": encode_image(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8), "JPEG"),
        "gray.png": encode_image(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8), "PNG", "L"),
    }
    for name, data in paths.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in paths]


def test_top3_for_images_of_any_size_and_mode(trained, tmp_path, capsys):
    images = write_images(tmp_path)
    assert cli.run(main, ["--model", str(Artifacts(trained).model), "--json", *images]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["errors"] == {} and list(out["predictions"]) == images
    classes = json.loads(Artifacts(trained).model_classes.read_text())
    expected = model_probabilities(Artifacts(trained).model, images)
    for ranked, model_says in zip(out["predictions"].values(), expected):
        probabilities = [r["probability"] for r in ranked]
        assert len(ranked) == 3 and probabilities == sorted(probabilities, reverse=True)
        # the model's three highest probabilities, and each printed beside its own class
        top3 = np.sort(model_says)[::-1][:3]
        np.testing.assert_allclose(probabilities, top3, atol=JSON_ROUNDING)
        np.testing.assert_allclose([model_says[classes.index(r["class"])] for r in ranked], top3, atol=JSON_ROUNDING)
        assert sum(probabilities) == pytest.approx(top3.sum(), abs=3 * JSON_ROUNDING)


def decode_by_hand(path):
    """The documented conversion, with Pillow alone: RGB, then 32x32 (area filter shrinking, bilinear growing)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        shrinking = rgb.size[0] > 32 or rgb.size[1] > 32
        filter_ = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        return np.asarray(rgb.resize((32, 32), filter_) if rgb.size != (32, 32) else rgb)


def model_probabilities(model_file, images):
    """The model's own probabilities of the image files, decoded by hand, in one batch as predict runs them."""
    return load_trained_model(model_file).predict(np.stack([decode_by_hand(p) for p in images]), verbose=0)


def test_top_class_is_the_models_argmax_on_the_same_pixels(trained, tmp_path, capsys):
    images = write_images(tmp_path)
    model_file = Artifacts(trained).model
    assert cli.run(main, ["--model", str(model_file), "--json", "--top", "10", *images]) == 0
    out = json.loads(capsys.readouterr().out)["predictions"]
    probabilities = model_probabilities(model_file, images)
    classes = json.loads(Artifacts(trained).model_classes.read_text())
    for path, expected in zip(images, probabilities):
        ranked = out[path]
        assert ranked[0]["class"] == classes[int(np.argmax(expected))]
        by_class = {r["class"]: r["probability"] for r in ranked}
        np.testing.assert_allclose([by_class[c] for c in classes], expected, atol=2e-6)


def test_plain_output_one_line_per_image(trained, tmp_path, capsys):
    images = write_images(tmp_path)
    assert cli.run(main, ["--model", str(Artifacts(trained).model), "--top", "2", *images]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == images
    assert all(len(line.split(": ", 1)[1].split(", ")) == 2 for line in lines)
    # each line: the model's two most likely classes, each with its probability to 3 decimals
    classes = json.loads(Artifacts(trained).model_classes.read_text())
    for line, model_says in zip(lines, model_probabilities(Artifacts(trained).model, images)):
        printed = [entry.rsplit(" ", 1) for entry in line.split(": ", 1)[1].split(", ")]
        assert all(re.fullmatch(r"[01]\.\d{3}", probability) for _, probability in printed), line
        top2 = np.sort(model_says)[::-1][:2]
        np.testing.assert_allclose([float(p) for _, p in printed], top2, atol=TEXT_ROUNDING + JSON_ROUNDING)
        np.testing.assert_allclose([model_says[classes.index(c)] for c, _ in printed], top2, atol=JSON_ROUNDING)


def test_bad_files_are_reported_and_the_others_classified(trained, tmp_path, capsys):
    good = write_images(tmp_path)[0]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    missing = tmp_path / "missing.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        cli.run(
            main,
            ["--model", str(Artifacts(trained).model), "--json", str(corrupt), good, str(empty), str(missing)],
        )
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)["predictions"]) == [good]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    assert f"{corrupt}: cannot decode image" in errors[0]
    assert f"{empty}: no image files in this folder" in errors[1]
    assert f"{missing}: no such file" in errors[2]


def test_missing_model(tmp_path, capsys):
    images = write_images(tmp_path)
    assert cli.run(main, ["--model", str(tmp_path / "none.keras"), *images]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'none.keras'}: model not found; run `dvc repro` (or `dvc pull`) first"
    )
