"""Photos as people have them (issue 32): each kind of file is seen as an image viewer shows it.

For every kind of file in tests/photos.py (EXIF orientation, 16-bit and float samples, alpha and
tRNS transparency, ICC profiles, CMYK, several frames, HEIC) the decoder, preprocess and predict are
compared with the picture rendered independently of cifar/data/images.py: predict's probabilities
for the file with the model's own for that picture, preprocess's stored arrays with the pictures.
"""

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.workspace import PROJECT
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.core.tensorflow_log import QUIET_MARK, without_log_lines
from cifar.data.images import Fitting, decode_image
from cifar.network.trained import load_trained_model
from stages.predict import Progress, classify, image_files, main
from stages.preprocess import preprocess
from tests import photos
from tests.datagen import encode_image, write_image_folder_archive

BLUE = "#336699"
# The model's probabilities of one picture, through predict (batch of the folder) and directly (one
# batch): measured 0 besides JSON's rounding to 6 decimals (AMD EPYC, 2 cores).
PRINTED_ATOL = 2e-6


@cache
def default_cases():
    return photos.default_cases()


def assert_picture(out, photo):
    assert out.shape == photo.picture.shape == (32, 32, 3) and out.dtype == np.uint8
    difference = np.abs(out.astype(int) - photo.picture.astype(int)).max()
    assert difference <= photo.atol, f"{photo.name}: off by {difference} (allowed {photo.atol}: {photo.why})"


@pytest.mark.parametrize("photo", default_cases(), ids=lambda photo: photo.name)
def test_each_kind_of_file_decodes_to_the_picture_a_viewer_shows(photo):
    assert_picture(decode_image(photo.data, photo.name), photo)


@pytest.mark.parametrize("photo", photos.transparency_cases((51, 102, 153), "-blue"), ids=lambda photo: photo.name)
def test_transparency_shows_the_background_param(photo):
    assert_picture(decode_image(photo.data, photo.name, Fitting(background=BLUE)), photo)


@pytest.mark.parametrize("aspect", ["squash", "crop", "pad"])
@pytest.mark.parametrize("shape", ["wide", "tall"])
def test_each_aspect_fits_a_picture_that_is_not_square(shape, aspect):
    photo = photos.aspect_cases()[shape][aspect]
    assert_picture(decode_image(photo.data, photo.name, Fitting(aspect, BLUE)), photo)


def test_a_large_jpeg_decodes_at_a_reduced_scale_to_the_full_decodes_picture():
    """JPEG's DCT scaling (to 8x the input) against the full decode, area-averaged: within 3 levels.

    Measured on 12, 2 and 0.5 megapixels: at most 2-3 levels, a mean of 0.3-0.4 (AMD EPYC)."""
    rows, columns = np.mgrid[0:1536, 0:2048]
    picture = np.stack(
        [(np.sin(columns / 300) + 1) * 120, (np.cos(rows / 300) + 1) * 120, (rows + columns) / 14.05], -1
    )
    picture = (picture + np.random.default_rng(0).normal(0, 20, picture.shape)).clip(0, 255).astype(np.uint8)
    data = encode_image(picture, "JPEG")
    with Image.open(io.BytesIO(data)) as full:
        expected = np.asarray(full.convert("RGB").resize((32, 32), Image.Resampling.BOX)).astype(int)
    out = decode_image(data, "big.jpg").astype(int)
    assert np.abs(out - expected).max() <= 3 and np.abs(out - expected).mean() <= 0.6


@pytest.mark.parametrize(
    "data, message",
    [
        (encode_image(photos.noise(64, 64), "JPEG")[:600], "cannot decode image: the file is truncated"),
        (encode_image(photos.noise(64, 64), "PNG")[:300], "cannot decode image"),
        (b"GIF89a not really", "cannot decode image"),
        (b"just text", "cannot decode image: not in a format Pillow reads"),
    ],
    ids=["truncated-jpeg", "truncated-png", "bad-gif", "text"],
)
def test_undecodable_files_are_one_error_naming_them(data, message):
    with pytest.raises(PipelineError, match=f"^photo.x: {message}"):
        decode_image(data, "photo.x")


def test_a_picture_over_the_decompression_bomb_limit_is_refused(monkeypatch):
    """Pillow's limit, twice MAX_IMAGE_PIXELS, checked from the header: shrunk here to 2 x 500 pixels."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    assert decode_image(encode_image(photos.noise(31, 32), "PNG"), "under.png").shape == (32, 32, 3)  # 992 pixels
    with pytest.raises(
        PipelineError, match=r"^over.png: refused: over Pillow's decompression-bomb limit of 1,000 pixels"
    ):
        decode_image(encode_image(photos.noise(32, 32), "PNG"), "over.png")


# --- predict ---


@pytest.fixture(scope="module")
def trained(trained_workspace):
    """The shared tiny seed_cnn, trained in float32 (tests/helpers.py: SHARED_TRAINING)."""
    return trained_workspace("seed_cnn")


@pytest.fixture(scope="module")
def model(trained):
    return load_trained_model(Artifacts(trained).model)


def probabilities_of(model, pictures):
    return model.predict(np.stack(pictures), verbose=0)


def write_folder(folder, cases):
    """The cases' files in `folder` (half of them one level down), with a desktop's junk beside them."""
    paths = []
    for index, photo in enumerate(cases):
        path = folder / ("more" if index % 2 else "") / photo.name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(photo.data)
        paths.append(str(path))
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "secret.png").write_bytes(cases[0].data)
    (folder / "more" / "._orientation-2.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    for junk in (".DS_Store", "Thumbs.db", "notes.txt", "more/desktop.ini"):
        (folder / junk).write_bytes(b"not an image")
    return paths


def in_name_order(paths):
    """Folder by folder, name by name (what `find | sort` would give, but "a/x" before "a-b/x")."""
    return sorted(paths, key=lambda path: Path(path).parts)


def run_predict(capsys, *args):
    code = cli.run(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_on_a_folder_classifies_each_file_as_its_picture(trained, model, tmp_path, capsys):
    cases = default_cases()
    paths = write_folder(tmp_path / "photos", cases)
    code, out, err = run_predict(
        capsys, "--model", str(Artifacts(trained).model), "--json", "--top", "10", str(tmp_path / "photos")
    )
    assert (code, err) == (0, "")
    printed = json.loads(out)
    assert printed["errors"] == {}
    assert list(printed["predictions"]) == in_name_order(paths)  # recursive, in name order, the junk skipped
    classes = json.loads(Artifacts(trained).model_classes.read_text())
    expected = dict(zip(paths, probabilities_of(model, [photo.picture for photo in cases])))
    decoded = dict(zip(paths, probabilities_of(model, [decode_image(photo.data, photo.name) for photo in cases])))
    for path, photo in zip(paths, cases):
        by_class = {entry["class"]: entry["probability"] for entry in printed["predictions"][path]}
        got = [by_class[name] for name in classes]
        # exact renderings: the picture's own probabilities; the others are the decoded picture's, which
        # test_each_kind_of_file_decodes_to_the_picture_a_viewer_shows holds within atol of the picture
        np.testing.assert_allclose(
            got, (expected if photo.atol == 0 else decoded)[path], atol=PRINTED_ATOL, err_msg=photo.name
        )
    # the model tells the orientations apart: printed probabilities that ignored them would fail above
    oriented = [expected[path] for path, photo in zip(paths, cases) if photo.name.startswith("orientation-")]
    assert min(np.abs(a - b).max() for i, a in enumerate(oriented) for b in oriented[i + 1 :]) > 1e-4


def test_predict_streams_bounded_batches_to_the_same_results(trained, tmp_path, capsys):
    paths = write_folder(tmp_path, default_cases()[:7])
    model_file = str(Artifacts(trained).model)
    _, whole, _ = run_predict(capsys, "--model", model_file, "--json", str(tmp_path))
    _, batched, _ = run_predict(capsys, "--model", model_file, "--json", "--batch-size", "2", str(tmp_path))
    whole, batched = json.loads(whole), json.loads(batched)
    assert list(batched["predictions"]) == list(whole["predictions"]) and len(whole["predictions"]) == len(paths)
    assert batched["errors"] == whole["errors"] == {}
    # the same numbers but for a batch size's summation order (oneDNN picks kernels by batch size: the
    # printed 6th decimal differed on an AMD EPYC with AVX2)
    for path, entries in whole["predictions"].items():
        other = batched["predictions"][path]
        assert [entry["class"] for entry in other] == [entry["class"] for entry in entries]
        np.testing.assert_allclose(
            [entry["probability"] for entry in other], [entry["probability"] for entry in entries], atol=PRINTED_ATOL
        )


def test_classify_holds_one_batch_at_a_time(tmp_path):
    """Memory independent of the number of files: a batch decoded, classified and handed on before the next."""
    write_folder(tmp_path, default_cases()[:7])
    calls = []

    class Recorder:
        def predict(self, images):
            calls.append(len(images))
            return np.tile(np.arange(10) / 45, (len(images), 1))

    results = classify(image_files([tmp_path]), Recorder(), [str(i) for i in range(10)], Fitting(), batch_size=3)
    next(results)
    assert calls == [3]  # the first result comes before the second batch is decoded
    assert len(list(results)) == 6 and calls == [3, 3, 1]


def test_csv_has_a_row_per_image_with_the_json_values(trained, tmp_path, capsys):
    paths = write_folder(tmp_path, default_cases()[:5])
    model_file = str(Artifacts(trained).model)
    _, as_json, _ = run_predict(capsys, "--model", model_file, "--json", "--top", "2", str(tmp_path))
    code, as_csv, err = run_predict(capsys, "--model", model_file, "--csv", "--top", "2", str(tmp_path))
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    assert list(rows[0]) == ["path", "class_1", "probability_1", "class_2", "probability_2"]
    assert [row["path"] for row in rows] == in_name_order(paths)
    for row in rows:
        ranked = json.loads(as_json)["predictions"][row["path"]]
        assert [row["class_1"], row["class_2"]] == [entry["class"] for entry in ranked]
        assert [float(row["probability_1"]), float(row["probability_2"])] == [entry["probability"] for entry in ranked]


def test_predict_reports_each_bad_file_in_one_line_and_classifies_the_rest(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 2 x 600: the 32x32 pictures pass, 64x64 is a bomb
    good = write_folder(tmp_path / "photos", default_cases()[:3])
    bad = {
        "bomb.png": (encode_image(photos.noise(64, 64), "PNG"), "refused: over Pillow's decompression-bomb limit"),
        "cut.jpg": (encode_image(photos.noise(64, 64), "JPEG")[:500], "cannot decode image: the file is truncated"),
        "fake.png": (b"<html>not a png</html>", "cannot decode image: not in a format Pillow reads"),
    }
    for name, (data, _) in bad.items():
        (tmp_path / "photos" / name).write_bytes(data)
    (tmp_path / "empty").mkdir()
    missing = tmp_path / "missing.jpg"
    with pytest.raises(SystemExit) as exit_info:
        cli.run(
            main,
            ["--model", str(Artifacts(trained).model), str(tmp_path / "photos"), str(tmp_path / "empty"), str(missing)],
        )
    assert exit_info.value.code == 1
    captured = capsys.readouterr()
    assert [line.split(": ")[0] for line in captured.out.splitlines()] == in_name_order(good)
    expected = [f"error: {tmp_path / 'photos' / name}: {message}" for name, (_, message) in sorted(bad.items())]
    expected += [f"error: {tmp_path / 'empty'}: no image files in this folder", f"error: {missing}: no such file"]
    lines = captured.err.splitlines()
    assert len(lines) == len(expected) and all(line.startswith(start) for line, start in zip(lines, expected)), lines


def test_predict_fits_pictures_as_the_model_was_trained(trained, model, tmp_path, capsys):
    """input.json beside the model (written by preprocess, kept by train and export) sets --aspect and --background."""
    served = tmp_path / "served"
    served.mkdir()
    for artifact in ("model", "model_classes"):
        (served / getattr(Artifacts(trained), artifact).name).write_bytes(
            getattr(Artifacts(trained), artifact).read_bytes()
        )
    assert Artifacts(trained).load_input(Artifacts(trained).model_input) == {"aspect": "squash", "background": "white"}
    wide = photos.aspect_cases()["wide"]
    (tmp_path / "wide.png").write_bytes(wide["pad"].data)
    exact_pad = photos.aspect_cases(background=(255, 255, 255))["wide"]["pad"]

    def printed(*options):
        code, out, err = run_predict(
            capsys,
            "--model",
            str(served / "model.keras"),
            "--json",
            "--top",
            "10",
            *options,
            str(tmp_path / "wide.png"),
        )
        assert (code, err) == (0, ""), err
        by_class = {e["class"]: e["probability"] for e in json.loads(out)["predictions"][str(tmp_path / "wide.png")]}
        return np.array([by_class[name] for name in json.loads((served / "classes.json").read_text())])

    def model_says(photo, fitting):
        return probabilities_of(model, [decode_image(photo.data, photo.name, fitting)])[0]

    # no input.json (a model from before it existed): squashed, as every model was trained then
    np.testing.assert_allclose(printed(), model_says(wide["squash"], Fitting()), atol=PRINTED_ATOL)
    (served / "input.json").write_text(json.dumps({"aspect": "pad", "background": BLUE}))
    np.testing.assert_allclose(printed(), model_says(wide["pad"], Fitting("pad", BLUE)), atol=PRINTED_ATOL)
    np.testing.assert_allclose(
        printed("--aspect", "crop"), probabilities_of(model, [wide["crop"].picture])[0], atol=PRINTED_ATOL
    )
    np.testing.assert_allclose(
        printed("--background", "white"), model_says(exact_pad, Fitting("pad")), atol=PRINTED_ATOL
    )
    assert np.abs(printed("--aspect", "crop") - printed()).max() > 1e-4  # the model sees the difference


def test_a_damaged_input_json_is_one_line_naming_it(trained, tmp_path, capsys):
    served = tmp_path / "served"
    shutil.copytree(Artifacts(trained).model.parent, served)
    (served / "input.json").write_text(json.dumps({"aspect": "stretch", "background": "white"}))
    (tmp_path / "a.png").write_bytes(default_cases()[0].data)
    code, out, err = run_predict(capsys, "--model", str(served / "model.keras"), str(tmp_path / "a.png"))
    assert (code, out) == (2, "")
    assert err == f"error: {served / 'input.json'}: aspect is 'stretch'; allowed: one of squash, crop, pad\n"


@pytest.mark.parametrize(
    "options, message",
    [
        (["--aspect", "stretch"], "argument --aspect: invalid choice: 'stretch'"),
        (["--background", "notacolour"], "--background is 'notacolour'; allowed: a colour"),
        (["--json", "--csv"], "argument --csv: not allowed with argument --json"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
    ],
)
def test_bad_predict_options_are_one_line_and_exit_2(tmp_path, capsys, options, message):
    (tmp_path / "a.png").write_bytes(default_cases()[0].data)
    try:
        code = cli.run(main, [*options, str(tmp_path / "a.png")])
    except SystemExit as usage_error:  # argparse's own errors exit from the parser
        code = usage_error.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_shows_on_a_terminal_only():
    terminal, pipe = FakeTerminal(), io.StringIO()
    for stream in (terminal, pipe):
        progress = Progress(64, stream)
        for _ in range(64):
            progress.advance()
        progress.message("error: x.png: cannot decode image")
        progress.close()
    assert pipe.getvalue() == "error: x.png: cannot decode image\n"
    shown = terminal.getvalue()
    assert "\rclassified 32/64 images (" in shown and "\rclassified 64/64 images (" in shown
    assert "\r\033[Kerror: x.png: cannot decode image\n" in shown  # the progress line cleared first


def test_the_progress_line_shows_images_classified_per_second_since_the_start(monkeypatch):
    """The rate is the images done over the seconds since the start, shown on a clock the test sets: 32
    images 0.5 s after the start are 64/s; 64 after 4 s, 16/s (not the last interval's 32 / 3.5 s)."""
    import stages.predict as predict

    clock = iter([100.0, 100.5, 104.0])  # the start, then each time the line is drawn
    monkeypatch.setattr(predict.time, "monotonic", lambda: next(clock))
    terminal = FakeTerminal()
    progress = Progress(64, terminal)
    for _ in range(64):
        progress.advance()
    shown = re.findall(r"\rclassified (\d+)/64 images \((\d+)/s\)", terminal.getvalue())
    assert shown == [("32", "64"), ("64", "16")]


# --- preprocess ---


def preprocessed(root, cases_by_class, **fitting):
    artifacts = Artifacts(root)
    artifacts.raw_dir.mkdir(parents=True)
    # train/<class>/<file> and test/<class>/<file> for each class's cases, nothing else
    files = {
        f"{split}/{name}/{photo.name}": photo.data
        for split in ("train", "test")
        for name, cases in cases_by_class.items()
        for photo in cases
    }
    write_image_folder_archive(artifacts.raw_dataset, train=0, test=0, extra=files)
    settings = {"max_train_images": None, "max_test_images": None, "seed": 0, "labels": "fine"}
    preprocess({**settings, "aspect": "squash", "background": "white", **fitting}, artifacts, progress=lambda m: None)
    return artifacts


def assert_stored(artifacts, cases_by_class):
    """x_train and x_test hold each case's picture, by class then file name, with its label."""
    expected = [
        (label, photo)
        for label, name in enumerate(sorted(cases_by_class))
        for photo in sorted(cases_by_class[name], key=lambda p: p.name)
    ]
    for split in ("train", "test"):
        x, y = np.load(artifacts.prepared_array(f"x_{split}")), np.load(artifacts.prepared_array(f"y_{split}"))
        assert y.tolist() == [label for label, _ in expected]
        for image, (_, photo) in zip(x, expected, strict=True):
            assert_picture(image, photo)


def test_preprocess_stores_the_picture_of_each_kind(tmp_path):
    cases = default_cases()
    by_class = {"cat": cases[::2], "dog": cases[1::2]}
    artifacts = preprocessed(tmp_path, by_class)
    assert_stored(artifacts, by_class)
    assert artifacts.load_input() == {"aspect": "squash", "background": "white"}


@pytest.mark.parametrize("aspect", ["crop", "pad"])
def test_preprocess_fits_by_its_aspect_and_background_params(tmp_path, aspect):
    by_shape = photos.aspect_cases()
    by_class = {"cat": [by_shape["wide"][aspect]], "dog": [by_shape["tall"][aspect]]}
    transparent = photos.transparency_cases((51, 102, 153), "-blue")[0]  # 32x32: the same by every aspect
    by_class["cat"].append(transparent)
    artifacts = preprocessed(tmp_path, by_class, aspect=aspect, background=BLUE)
    assert_stored(artifacts, by_class)
    assert artifacts.load_input() == {"aspect": aspect, "background": BLUE}


# --- TensorFlow's log lines ---


def test_only_tensorflows_log_lines_are_dropped():
    captured = (
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        b"I0000 00:00:1796292782.709443   24548 port.cc:153] oneDNN custom operations are on.\n"
        b"E0000 00:00:1796292886.491570   24810 node_def_util.cc:682] NodeDef mentions attribute\n"
        b"/site-packages/keras/x.py:74: UserWarning: a real warning\n"
        b"Traceback (most recent call last):\n"
    )
    assert without_log_lines(captured) == (
        b"/site-packages/keras/x.py:74: UserWarning: a real warning\nTraceback (most recent call last):\n"
    )


def test_predict_prints_the_projects_lines_only_unless_asked(trained, tmp_path):
    """A real process, as a user runs it: TensorFlow's start-up lines appear with --verbose or
    TF_CPP_MIN_LOG_LEVEL=0 only; a level of 1 to 3 (asking TensorFlow for fewer lines), or none, hides them."""
    (tmp_path / "a.png").write_bytes(default_cases()[0].data)
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", QUIET_MARK)}
    env["PYTHONPATH"] = str(PROJECT)
    command = [
        sys.executable,
        "-m",
        "stages.predict",
        "--model",
        str(Artifacts(trained).model),
        str(tmp_path / "a.png"),
    ]

    def run(*options, level=None):
        levels = {} if level is None else {"TF_CPP_MIN_LOG_LEVEL": level}
        done = subprocess.run([*command, *options], env={**env, **levels}, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return done

    quiet = run()
    assert quiet.stderr == "", quiet.stderr
    assert quiet.stdout.splitlines()[0].startswith(f"{tmp_path / 'a.png'}: ") and len(quiet.stdout.splitlines()) == 1
    for level in ("1", "2"):
        fewer = run(level=level)
        assert fewer.stderr == "" and fewer.stdout == quiet.stdout, (level, fewer.stderr)
    for shown in (run("--verbose"), run(level="0")):
        assert shown.stdout == quiet.stdout
        assert without_log_lines(shown.stderr.encode()) != shown.stderr.encode()  # TensorFlow's lines, shown
