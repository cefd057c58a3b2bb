import io
import json
import os
import pickle

import numpy as np
import pytest
from PIL import Image

from cifar.core.errors import PipelineError
from cifar.data.datasets import read_dataset
from cifar.data.images import decode_image
from cifar.data.prepare import balanced_subset, normalized_stats
from stages.preprocess import preprocess
from tests import summaries
from tests.datagen import CLASSES, copy_tar_without, encode_image, write_cifar_archive, write_image_folder_archive
from tests.helpers import fetched

PARAMS = {
    "max_train_images": None,
    "max_test_images": None,
    "seed": 0,
    "labels": "fine",
    "aspect": "squash",
    "background": "white",
}


def test_cifar_archive_round_trips(tmp_path):
    x_train, y_train, x_test, y_test = write_cifar_archive(tmp_path / "c.tar.gz")
    data = read_dataset(tmp_path / "c.tar.gz")
    assert data.classes == CLASSES
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)
    np.testing.assert_array_equal(data.y_test, y_test)


@pytest.mark.parametrize("prefix", ["", "cifar10/"])
def test_image_folder_archive_round_trips(tmp_path, prefix):
    x_train, y_train, x_test, y_test = write_image_folder_archive(tmp_path / "f.tar.gz", prefix=prefix)
    data = read_dataset(tmp_path / "f.tar.gz", progress=lambda msg: None)
    assert data.classes == sorted(CLASSES)
    np.testing.assert_array_equal(data.x_train, x_train)
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.x_test, x_test)


def test_pickle_that_runs_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = pickle.dumps({b"data": Exploit(), b"labels": []}, protocol=2)
    write_cifar_archive(tmp_path / "evil.tar.gz", batch_override={"data_batch_3": evil})
    with pytest.raises(PipelineError, match=r"data_batch_3: not a valid CIFAR pickle: refused to load global"):
        read_dataset(tmp_path / "evil.tar.gz")
    assert not marker.exists()


@pytest.mark.parametrize(
    "batch, message",
    [
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 3]}, r"shape \(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.float32), b"labels": [0, 1, 2, 3]}, "uint8"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, r"labels must be in 0..9"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}, "2 labels for 4 images"),
        ({b"labels": [0]}, "missing key 'data'"),
        ([1, 2, 3], "expected a pickled dict"),
    ],
)
def test_malformed_batches(tmp_path, batch, message):
    write_cifar_archive(tmp_path / "bad.tar.gz", batch_override={"test_batch": pickle.dumps(batch, protocol=2)})
    with pytest.raises(PipelineError, match=message):
        read_dataset(tmp_path / "bad.tar.gz")


def test_missing_cifar_member(tmp_path):
    write_cifar_archive(tmp_path / "c.tar.gz")
    copy_tar_without(tmp_path / "c.tar.gz", tmp_path / "partial.tar", "data_batch_5")
    with pytest.raises(PipelineError, match="lacks data_batch_5"):
        read_dataset(tmp_path / "partial.tar")


def quadrants(colours, size=32):
    """An image of four flat quadrants of the given RGB colours."""
    image = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    for (row, col), colour in zip([(0, 0), (0, 1), (1, 0), (1, 1)], colours):
        image[row * half : (row + 1) * half, col * half : (col + 1) * half] = colour
    return image


COLOURS = [(200, 30, 40), (20, 180, 60), (30, 60, 220), (240, 230, 20)]


@pytest.mark.parametrize("mode", ["RGBA", "P", "L", "CMYK"])
def test_images_of_any_mode_keep_their_colours(mode):
    rgb = quadrants(COLOURS)
    if mode == "P":  # a palette of exactly these four colours
        buffer = io.BytesIO()
        Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(buffer, "PNG")
        data = buffer.getvalue()
    else:
        data = encode_image(rgb, "JPEG" if mode == "CMYK" else "PNG", mode)
    out = decode_image(data, "x")
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    if mode in ("RGBA", "P"):  # alpha dropped; a palette of four colours holds them exactly
        np.testing.assert_array_equal(out, rgb)
    elif mode == "L":  # ITU-R 601 luma, in all three channels
        luma = np.round(rgb.astype(float) @ [0.299, 0.587, 0.114])
        np.testing.assert_allclose(out, np.repeat(luma[..., None], 3, axis=-1), atol=1)
    else:  # CMYK, through lossy JPEG: each quadrant's colour comes back, inverted from C, M, Y
        means = [out[r : r + 8, c : c + 8].reshape(-1, 3).mean(axis=0) for r, c in [(4, 4), (4, 20), (20, 4), (20, 20)]]
        np.testing.assert_allclose(means, COLOURS, atol=8)


def smooth_noise(height, width, seed=0):
    """A non-trivial image: neighbouring pixels differ, so every resampling filter gives another result."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


@pytest.mark.parametrize(
    "height, width, expected",
    [(64, 64, "box"), (100, 75, "box"), (48, 20, "box"), (20, 20, "bilinear"), (24, 31, "bilinear")],
)
def test_resizing_uses_pillows_area_filter_to_shrink_and_bilinear_to_enlarge(height, width, expected):
    """Area averaging when any side shrinks (no aliasing), bilinear when the image only grows."""
    image = smooth_noise(height, width)
    out = decode_image(encode_image(image), "x")
    reference = {name: np.asarray(Image.fromarray(image).resize((32, 32), f)) for name, f in FILTERS.items()}
    np.testing.assert_array_equal(out, reference[expected])
    for name, other in reference.items():
        if name != expected:
            assert not np.array_equal(out, other), f"{name} gives the same result: the test cannot tell them apart"


def test_undecodable_image_names_the_member(tmp_path):
    write_image_folder_archive(tmp_path / "f.tar", extra={"train/cat/broken.png": b"\x89PNG\r\n\x1a\nnot really"})
    with pytest.raises(PipelineError, match=r"train/cat/broken.png: cannot decode image"):
        read_dataset(tmp_path / "f.tar", progress=lambda msg: None)


def test_class_folders_must_agree(tmp_path):
    write_image_folder_archive(
        tmp_path / "f.tar", extra={"train/unicorn/0.png": encode_image(np.zeros((32, 32, 3), np.uint8))}
    )
    with pytest.raises(PipelineError, match=r"class folders differ.*only in train: \['unicorn'\]"):
        read_dataset(tmp_path / "f.tar", progress=lambda msg: None)


def test_no_dataset_layout(tmp_path):
    write_image_folder_archive(tmp_path / "f.tar", train=0, test=0, extra={"notes/readme.png": b"x"})
    with pytest.raises(PipelineError, match="no dataset found"):
        read_dataset(tmp_path / "f.tar")


@pytest.mark.parametrize("max_images", [1, 7, 10, 25, 33])
def test_balanced_subset(max_images):
    labels = np.repeat(np.arange(10), 5)
    index = balanced_subset(labels, max_images, np.random.default_rng(0))
    counts = np.bincount(labels[index], minlength=10)
    assert len(index) == min(max_images, 50)
    assert counts.max() - counts.min() <= 1
    assert len(set(index)) == len(index) and (np.diff(index) > 0).all()


def test_balanced_subset_all():
    labels = np.arange(20) % 10
    np.testing.assert_array_equal(balanced_subset(labels, None, np.random.default_rng(0)), np.arange(20))


def test_normalized_stats_match_tutorial_formula():
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    normalized = images / 255 - 0.5
    stats = normalized_stats(images)
    assert stats["mean"] == pytest.approx(np.mean(normalized))
    assert stats["std"] == pytest.approx(np.std(normalized))


def test_preprocess_writes_arrays_classes_and_samples(tmp_path):
    _, _, x_source, y_source = write_cifar_archive(tmp_path / "c.tar.gz", train_per_batch=10, test=20)
    artifacts = fetched(tmp_path, tmp_path / "c.tar.gz")
    messages = []
    preprocess({**PARAMS, "max_train_images": 30, "max_test_images": 10}, artifacts, progress=messages.append)
    summaries.check_preprocess(messages, artifacts)
    x_train = np.load(artifacts.prepared_array("x_train"))
    y_train = np.load(artifacts.prepared_array("y_train"))
    assert x_train.shape == (30, 32, 32, 3) and x_train.dtype == np.uint8
    assert np.bincount(y_train, minlength=10).tolist() == [3] * 10
    # The test subset: one image of each class, each with its own label, taken from the archive's test batch
    x_test, y_test = np.load(artifacts.prepared_array("x_test")), np.load(artifacts.prepared_array("y_test"))
    assert x_test.shape == (10, 32, 32, 3) and sorted(y_test.tolist()) == list(range(10))
    for image, label in zip(x_test, y_test):
        (source,) = np.flatnonzero((x_source == image).all(axis=(1, 2, 3)))
        assert y_source[source] == label
    assert json.loads(artifacts.prepared_classes.read_text()) == CLASSES
    with Image.open(artifacts.samples_figure) as image:
        assert image.format == "PNG" and image.size[0] > 800
