"""Tiny datasets in the real formats, generated for the tests (no network, no ../shared)."""

import colorsys
import io
import pickle
import tarfile

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# One colour per class, hues 36 degrees apart: a CNN tells them apart after a few dozen steps,
# so a test can check that training learns (tests/test_learning.py).
PALETTE = np.array([colorsys.hsv_to_rgb(i / len(CLASSES), 0.8, 0.85) for i in range(len(CLASSES))]) * 255


def random_images(count, rng):
    """Images of the class's colour plus noise; labels shuffled."""
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    noise = rng.integers(-40, 41, size=(count, 32, 32, 3))
    images = np.clip(PALETTE[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, labels


def _add_bytes(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def cifar_batch_bytes(images, labels, protocol=2):
    """One batch pickled as in the official archive: dict of bytes keys, data (N, 3072) uint8 in CHW order."""
    batch = {
        b"batch_label": b"generated",
        b"labels": [int(v) for v in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
    }
    return pickle.dumps(batch, protocol=protocol)


def write_cifar_archive(path, train_per_batch=20, test=20, seed=0, batch_override=None):
    """A CIFAR-10 Python archive (tar.gz, cifar-10-batches-py/...) with tiny batches.

    Returns (x_train, y_train, x_test, y_test) as written. `batch_override` maps a
    member base name to raw bytes, to plant a bad batch.
    """
    rng = np.random.default_rng(seed)
    batch_override = batch_override or {}
    parts = [random_images(train_per_batch, rng) for _ in range(5)]
    x_test, y_test = random_images(test, rng)
    with tarfile.open(path, "w:gz") as tar:
        meta = pickle.dumps({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}, protocol=2)
        _add_bytes(tar, "cifar-10-batches-py/batches.meta", batch_override.get("batches.meta", meta))
        for i, (x, y) in enumerate(parts, start=1):
            name = f"data_batch_{i}"
            _add_bytes(tar, f"cifar-10-batches-py/{name}", batch_override.get(name, cifar_batch_bytes(x, y)))
        _add_bytes(
            tar, "cifar-10-batches-py/test_batch", batch_override.get("test_batch", cifar_batch_bytes(x_test, y_test))
        )
        _add_bytes(tar, "cifar-10-batches-py/readme.html", b"<html></html>")
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return x_train, y_train, x_test, y_test


def encode_image(array, fmt="PNG", mode=None):
    image = Image.fromarray(array)
    if mode:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, format=fmt)
    return out.getvalue()


def write_image_folder_archive(path, train=40, test=20, seed=0, fmt="PNG", prefix="", classes=CLASSES, extra=None):
    """An image-folder archive train/<class>/NNNN.png, test/<class>/NNNN.png (lossless by default).

    Returns the arrays in the order preprocess produces them (by class, then file name).
    `extra` maps member names to bytes to add.
    """
    rng = np.random.default_rng(seed)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    result = {}
    mode = "w:gz" if str(path).endswith("gz") else "w"
    with tarfile.open(path, mode) as tar:
        for split, count in (("train", train), ("test", test)):
            images, labels = random_images(count, rng)
            order = np.lexsort((np.arange(count), labels))
            for i in order:
                _add_bytes(tar, f"{prefix}{split}/{classes[labels[i]]}/{i:04d}.{ext}", encode_image(images[i], fmt))
            result[split] = (images[order], labels[order])
        for name, data in (extra or {}).items():
            _add_bytes(tar, name, data)
    return result["train"][0], result["train"][1], result["test"][0], result["test"][1]
