"""Data as people have it: zip archives, desktop-made folders, the CIFAR-10 binary version, CIFAR-100.

Every format is built in miniature here, bad variants included (hostile archives: tests/test_archive.py).
"""

import io

import numpy as np
import pytest
from PIL import Image

from cifar.core.errors import PipelineError
from cifar.data.datasets import read_dataset
from cifar.data.images import IMAGE_EXTENSIONS
from cifar.data.os_files import is_os_file
from tests.datagen import (
    CLASSES,
    COARSE_CLASSES,
    FINE_CLASSES,
    cifar_binary_bytes,
    copy_tar_without,
    desktop_extras,
    encode_image,
    write_cifar100_archive,
    write_cifar_binary_archive,
    write_image_folder_archive,
)


def read(path, labels="fine"):
    return read_dataset(path, labels, progress=lambda message: None)


def assert_same(dataset, x_train, y_train, x_test, y_test, classes):
    np.testing.assert_array_equal(dataset.x_train, x_train)
    np.testing.assert_array_equal(dataset.y_train, y_train)
    np.testing.assert_array_equal(dataset.x_test, x_test)
    np.testing.assert_array_equal(dataset.y_test, y_test)
    assert dataset.classes == classes


@pytest.mark.parametrize("name", ["images.zip", "images.tar", "images.tar.gz", "images.tar.bz2", "images.tar.xz"])
def test_image_folders_read_the_same_from_zip_and_every_tar(tmp_path, name):
    written = write_image_folder_archive(tmp_path / name, prefix="cifar10/")
    assert_same(read(tmp_path / name), *written, sorted(CLASSES))


@pytest.mark.parametrize("system", ["macos", "windows", "linux"])
@pytest.mark.parametrize("container", ["zip", "tar.gz"])
def test_desktop_made_archives_read_as_the_clean_ones(tmp_path, system, container):
    """Metadata of the OS and its file manager, at every level, and beside the one top folder."""
    clean = write_image_folder_archive(tmp_path / f"clean.{container}", prefix="my-data/")
    desktop = tmp_path / f"desktop.{container}"
    write_image_folder_archive(desktop, prefix="my-data/", extra=desktop_extras(system, "my-data/"))
    assert_same(read(desktop), *clean, sorted(CLASSES))


@pytest.mark.parametrize(
    "name",
    [
        "__MACOSX/train/cat/._0001.png",
        "train/cat/._0001.png",
        ".DS_Store",
        "train/.DS_Store",
        "train/cat/Thumbs.db",
        "train/cat/THUMBS.DB",
        "train/desktop.ini",
        "$RECYCLE.BIN/x.png",
        "System Volume Information/IndexerVolumeGuid",
        ".Spotlight-V100/Store-V2/x",
        ".fseventsd/0001",
        ".Trashes/501/x.png",
        ".thumbnails/normal/x.png",
        "train/cat/.directory",
        "train/cat/Icon\r",
        "__MACOSX/",
    ],
)
def test_os_files_are_recognised(name):
    assert is_os_file(name)


@pytest.mark.parametrize("name", ["train/cat/0001.png", "train/cat/thumbs.png", "my.data/train/cat/a.png"[3:]])
def test_data_is_not_taken_for_os_files(name):
    assert not is_os_file(name)


def test_image_extensions_in_any_case_and_every_pillow_format(tmp_path):
    formats = ["PNG", "PNG:PNG", "JPEG:JPG", "JPEG:Jpeg", "BMP", "WEBP:WebP", "TIFF:TIFF", "GIF"]
    x_train, y_train, x_test, y_test = write_image_folder_archive(tmp_path / "mixed.zip", fmt=formats)
    data = read(tmp_path / "mixed.zip")
    np.testing.assert_array_equal(data.y_train, y_train)
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.classes == CLASSES
    for read_back, written in ((data.x_train, x_train), (data.x_test, x_test)):
        for position, (image, original) in enumerate(zip(read_back, written)):
            name = formats[position % len(formats)].partition(":")[0]
            # What Pillow alone decodes from the same file: the original itself where the format is lossless
            with Image.open(io.BytesIO(encode_image(original, name))) as decoded:
                np.testing.assert_array_equal(image, np.asarray(decoded.convert("RGB")), err_msg=name)
            if name in ("PNG", "BMP", "TIFF"):
                np.testing.assert_array_equal(image, original)
    assert {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".tga"} <= IMAGE_EXTENSIONS


def test_a_file_that_claims_to_be_an_image_is_still_an_error(tmp_path):
    extra = {"cifar10/train/cat/photo.JPG": b"this is not a jpeg", "cifar10/train/cat/._photo.JPG": b"\0\5\26\7"}
    write_image_folder_archive(tmp_path / "bad.zip", prefix="cifar10/", extra=extra)
    with pytest.raises(PipelineError, match=r"bad.zip:cifar10/train/cat/photo.JPG: cannot decode image"):
        read(tmp_path / "bad.zip")


# The CIFAR-10 binary version.


@pytest.mark.parametrize("name", ["bin.tar.gz", "bin.zip"])
def test_cifar10_binary_reads_like_the_python_version(tmp_path, name):
    written = write_cifar_binary_archive(tmp_path / name)
    assert_same(read(tmp_path / name), *written, CLASSES)


@pytest.mark.parametrize(
    "override, message",
    [
        (
            {"data_batch_2.bin": b"\0" * 3072},
            r"data_batch_2.bin: 3072 bytes is not a whole number of 3073-byte records",
        ),
        ({"test_batch.bin": b""}, r"test_batch.bin: 0 bytes is not a whole number"),
        (
            {"data_batch_1.bin": cifar_binary_bytes(np.zeros((2, 32, 32, 3), np.uint8), [3, 10])},
            "labels must be in 0..9",
        ),
        ({"batches.meta.txt": b"\n\n"}, "batches.meta.txt: no class names"),
    ],
)
def test_bad_binary_batches_are_refused_in_one_line(tmp_path, override, message):
    write_cifar_binary_archive(tmp_path / "bin.tar.gz", override=override)
    with pytest.raises(PipelineError, match=message):
        read(tmp_path / "bin.tar.gz")


def test_a_binary_archive_missing_a_batch_names_it(tmp_path):
    write_cifar_binary_archive(tmp_path / "bin.tar")
    copy_tar_without(tmp_path / "bin.tar", tmp_path / "partial.tar", "data_batch_4.bin")
    with pytest.raises(PipelineError, match="CIFAR-10 binary archive lacks data_batch_4.bin"):
        read(tmp_path / "partial.tar")


# CIFAR-100.


@pytest.mark.parametrize("labels, classes, column", [("fine", FINE_CLASSES, 1), ("coarse", COARSE_CLASSES, 2)])
def test_cifar100_with_fine_or_coarse_labels(tmp_path, labels, classes, column):
    written = write_cifar100_archive(tmp_path / "c100.tar.gz")
    data = read(tmp_path / "c100.tar.gz", labels)
    assert_same(
        data, *written["train"][:1], written["train"][column], written["test"][0], written["test"][column], classes
    )
    assert len(data.classes) == {"fine": 100, "coarse": 20}[labels]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"train": "labels out of range"}, r"cifar-100-python/train: labels must be in 0..99; found 0..100"),
        ({"meta": b"not a pickle"}, r"cifar-100-python/meta: not a valid CIFAR pickle"),
    ],
)
def test_bad_cifar100_files_are_refused_in_one_line(tmp_path, override, message):
    if override.get("train") == "labels out of range":
        from tests.datagen import cifar100_batch_bytes, cifar100_images

        images, fine, coarse = cifar100_images(10, np.random.default_rng(0))
        fine[3] = 100
        override = {"train": cifar100_batch_bytes(images, fine, coarse)}
    write_cifar100_archive(tmp_path / "c100.tar.gz", override=override)
    with pytest.raises(PipelineError, match=message):
        read(tmp_path / "c100.tar.gz")


def test_coarse_labels_of_a_dataset_without_them_are_refused(tmp_path):
    write_image_folder_archive(tmp_path / "f.zip")
    with pytest.raises(PipelineError, match=r"preprocess.labels: 'coarse' labels exist in CIFAR-100 only"):
        read(tmp_path / "f.zip", labels="coarse")
