import json

import numpy as np
import pytest
from PIL import Image

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.models.saved import load_trained_model
from stages.predict import main
from tests.datagen import encode_image
from tests.helpers import prepare_workspace, train_in_workspace


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("predict")
    prepare_workspace(path, precision="auto", epochs=2)
    train_in_workspace(path)
    return path


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
    for ranked in out["predictions"].values():
        probabilities = [r["probability"] for r in ranked]
        assert len(ranked) == 3 and probabilities == sorted(probabilities, reverse=True)
        assert 0 < sum(probabilities) <= 1.0001
        assert {r["class"] for r in ranked} <= set(classes)


def decode_by_hand(path):
    """The documented conversion, with Pillow alone: RGB, then 32x32 (area filter shrinking, bilinear growing)."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        shrinking = rgb.size[0] > 32 or rgb.size[1] > 32
        filter_ = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
        return np.asarray(rgb.resize((32, 32), filter_) if rgb.size != (32, 32) else rgb)


def test_top_class_is_the_models_argmax_on_the_same_pixels(trained, tmp_path, capsys):
    images = write_images(tmp_path)
    model_file = Artifacts(trained).model
    assert cli.run(main, ["--model", str(model_file), "--json", "--top", "10", *images]) == 0
    out = json.loads(capsys.readouterr().out)["predictions"]
    probabilities = load_trained_model(model_file).predict(np.stack([decode_by_hand(p) for p in images]), verbose=0)
    classes = json.loads(Artifacts(trained).model_classes.read_text())
    for path, expected in zip(images, probabilities):
        ranked = out[path]
        assert ranked[0]["class"] == classes[int(np.argmax(expected))]
        by_class = {r["class"]: r["probability"] for r in ranked}
        np.testing.assert_allclose([by_class[c] for c in classes], expected, atol=2e-6)


def test_plain_output_one_line_per_image(trained, tmp_path, capsys):
    images = write_images(tmp_path)
    cli.run(main, ["--model", str(Artifacts(trained).model), "--top", "2", *images])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == images
    assert all(len(line.split(": ", 1)[1].split(", ")) == 2 for line in lines)


def test_bad_files_are_reported_and_the_others_classified(trained, tmp_path, capsys):
    good = write_images(tmp_path)[0]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    missing = tmp_path / "missing.png"
    with pytest.raises(SystemExit) as exit_info:
        cli.run(
            main,
            ["--model", str(Artifacts(trained).model), "--json", str(corrupt), good, str(tmp_path), str(missing)],
        )
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert list(json.loads(captured.out)["predictions"]) == [good]
    errors = captured.err.strip().splitlines()
    assert len(errors) == 3
    assert f"{corrupt}: cannot decode image" in errors[0]
    assert f"{tmp_path}: is a directory" in errors[1]
    assert f"{missing}: cannot read" in errors[2]


def test_missing_model(tmp_path, capsys):
    images = write_images(tmp_path)
    assert cli.run(main, ["--model", str(tmp_path / "none.keras"), *images]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"error: {tmp_path / 'none.keras'}: model not found; run `dvc repro` (or `dvc pull`) first"
    )
