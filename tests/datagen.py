"""Tiny datasets in the real formats, generated for the tests (no network, no ../shared)."""

import colorsys
import io
import pickle
import tarfile
import zipfile

import numpy as np
from PIL import Image

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# One colour per class, hues 36 degrees apart: a CNN tells them apart after a few dozen steps,
# so a test can check that training learns (tests/test_learning.py).
PALETTE = np.array([colorsys.hsv_to_rgb(i / len(CLASSES), 0.8, 0.85) for i in range(len(CLASSES))]) * 255


def random_images(count, rng, coloured=True):
    """Images of the class's colour plus noise (`coloured` false: noise over the whole range); labels shuffled.

    Coloured, every image of a class is nearly the same, a class easy to learn; noise images give
    well-conditioned gradients where the class colours make the last conv layers' nearly cancel
    (tests/test_distribute.py measures it).
    """
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    if not coloured:
        return rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8), labels
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


def write_cifar_archive(path, train_per_batch=20, test=20, seed=0, batch_override=None, coloured=True):
    """A CIFAR-10 Python archive (tar.gz, cifar-10-batches-py/...) with tiny batches.

    Returns (x_train, y_train, x_test, y_test) as written. `batch_override` maps a
    member base name to raw bytes, to plant a bad batch; `coloured`: random_images's.
    """
    rng = np.random.default_rng(seed)
    batch_override = batch_override or {}
    parts = [random_images(train_per_batch, rng, coloured) for _ in range(5)]
    x_test, y_test = random_images(test, rng, coloured)
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


class _Writer:
    """Adds named files to a tar (any compression, by the path's suffix) or a zip archive."""

    def __init__(self, path):
        self.path = str(path)
        if self.path.endswith(".zip"):
            self.archive = zipfile.ZipFile(self.path, "w", zipfile.ZIP_DEFLATED)
            self.add = self.archive.writestr
        else:
            compression = next((c for c in ("gz", "bz2", "xz") if self.path.endswith(c)), "")
            self.archive = tarfile.open(self.path, f"w:{compression}")  # noqa: SIM115  closed by __exit__
            self.add = lambda name, data: _add_bytes(self.archive, name, data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.archive.close()


IMAGE_SUFFIXES = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "WEBP": "webp", "TIFF": "tif", "GIF": "gif"}


def write_image_folder_archive(path, train=40, test=20, seed=0, fmt="PNG", prefix="", classes=CLASSES, extra=None):
    """An image-folder archive train/<class>/NNNN.png, test/<class>/NNNN.png (lossless by default).

    A .zip path writes a zip; others a tar (.gz, .bz2, .xz compressed by suffix). `fmt` is one
    Pillow format for all, or a list cycled through (case of the suffix included: "JPEG:JPG").
    Returns the arrays in the order preprocess produces them (by class, then file name).
    `extra` maps member names to bytes to add.
    """
    rng = np.random.default_rng(seed)
    formats = [fmt] if isinstance(fmt, str) else list(fmt)
    result = {}
    with _Writer(path) as archive:
        for split, count in (("train", train), ("test", test)):
            images, labels = random_images(count, rng)
            order = np.lexsort((np.arange(count), labels))
            for position, i in enumerate(order):
                name, _, suffix = formats[position % len(formats)].partition(":")
                suffix = suffix or IMAGE_SUFFIXES[name]
                archive.add(f"{prefix}{split}/{classes[labels[i]]}/{i:04d}.{suffix}", encode_image(images[i], name))
            result[split] = (images[order], labels[order])
        for name, data in (extra or {}).items():
            archive.add(name, data)
    return result["train"][0], result["train"][1], result["test"][0], result["test"][1]


# What desktop file managers leave in the folders they zip: metadata, and their own hidden files.
APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(50)  # a resource fork's header


def desktop_extras(system, prefix="", classes=("cat", "dog")):
    """The files a macOS, Windows or Linux desktop adds when a user zips a dataset folder."""
    if system == "macos":  # Finder's "Compress": resource forks under __MACOSX/, .DS_Store in every folder
        extras = {f"{prefix}.DS_Store": b"\0\0\0\1Bud1", "__MACOSX/._" + prefix.rstrip("/"): APPLE_DOUBLE}
        for split in ("train", "test"):
            extras[f"{prefix}{split}/.DS_Store"] = b"\0\0\0\1Bud1"
            for cls in classes:
                extras[f"__MACOSX/{prefix}{split}/{cls}/._0000.png"] = APPLE_DOUBLE
                extras[f"{prefix}{split}/{cls}/._0000.png"] = APPLE_DOUBLE  # as tar leaves them beside the file
                extras[f"{prefix}{split}/{cls}/Icon\r"] = b""
        return extras
    if system == "windows":  # Explorer's thumbnail cache and folder settings
        extras = {f"{prefix}desktop.ini": b"[.ShellClassInfo]\r\n", "$RECYCLE.BIN/desktop.ini": b""}
        for split in ("train", "test"):
            for cls in classes:
                extras[f"{prefix}{split}/{cls}/Thumbs.db"] = b"\xd0\xcf\x11\xe0" + bytes(60)
                extras[f"{prefix}{split}/{cls}/desktop.ini"] = b"[ViewState]\r\n"
        return extras
    if system == "linux":  # KDE's folder settings, GNOME's thumbnails, a hidden editor file
        return {
            f"{prefix}.directory": b"[Desktop Entry]\nIcon=folder\n",
            f"{prefix}train/cat/.directory": b"[Desktop Entry]\n",
            f"{prefix}.thumbnails/normal/abc.png": encode_image(np.zeros((8, 8, 3), np.uint8)),
            f"{prefix}test/dog/.0001.png.swp": b"vim swap",
        }
    raise ValueError(system)


def cifar_binary_bytes(images, labels):
    """Records of the CIFAR-10 binary version: a label byte, then the red, green and blue planes."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1).tobytes()


def write_cifar_binary_archive(path, train_per_batch=20, test=20, seed=0, override=None):
    """The CIFAR-10 binary version (cifar-10-batches-bin/...) with tiny batches; returns the arrays written.

    `override` maps a member's base name to raw bytes, to plant a bad file.
    """
    rng = np.random.default_rng(seed)
    override = override or {}
    parts = [random_images(train_per_batch, rng) for _ in range(5)]
    x_test, y_test = random_images(test, rng)
    with _Writer(path) as archive:
        meta = ("\n".join(CLASSES) + "\n\n").encode()
        archive.add("cifar-10-batches-bin/batches.meta.txt", override.get("batches.meta.txt", meta))
        for i, (x, y) in enumerate(parts, start=1):
            name = f"data_batch_{i}.bin"
            archive.add(f"cifar-10-batches-bin/{name}", override.get(name, cifar_binary_bytes(x, y)))
        archive.add(
            "cifar-10-batches-bin/test_batch.bin", override.get("test_batch.bin", cifar_binary_bytes(x_test, y_test))
        )
        archive.add("cifar-10-batches-bin/readme.html", b"<html></html>")
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), x_test, y_test


# CIFAR-100's fine classes as its meta file names them, in its order (alphabetical), so that CIFAR-100-C's
# labels map onto them by name (cifar/robustness/published.py)
FINE_CLASSES = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
]
COARSE_CLASSES = [f"coarse{i:02d}" for i in range(20)]
PALETTE_100 = (
    np.array([colorsys.hsv_to_rgb(i / 100, 0.5 + 0.5 * (i % 2), 0.6 + 0.4 * (i % 3) / 2) for i in range(100)]) * 255
)


def cifar100_images(count, rng):
    """Images of 100 classes (a colour each, plus noise) with their fine labels and coarse labels (fine // 5)."""
    fine = np.arange(count) % 100
    rng.shuffle(fine)
    noise = rng.integers(-20, 21, size=(count, 32, 32, 3))
    images = np.clip(PALETTE_100[fine][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, fine, fine // 5


def cifar100_batch_bytes(images, fine, coarse):
    batch = {
        b"filenames": [f"{i}.png".encode() for i in range(len(images))],
        b"batch_label": b"generated",
        b"fine_labels": [int(v) for v in fine],
        b"coarse_labels": [int(v) for v in coarse],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
    }
    return pickle.dumps(batch, protocol=2)


def write_cifar100_archive(path, train=200, test=100, seed=0, override=None):
    """The CIFAR-100 Python archive (cifar-100-python/{train,test,meta}); returns
    {split: (images, fine labels, coarse labels)}. `override` maps a member's base name to raw bytes."""
    rng = np.random.default_rng(seed)
    override = override or {}
    splits = {"train": cifar100_images(train, rng), "test": cifar100_images(test, rng)}
    meta = {
        b"fine_label_names": [c.encode() for c in FINE_CLASSES],
        b"coarse_label_names": [c.encode() for c in COARSE_CLASSES],
    }
    with _Writer(path) as archive:
        archive.add("cifar-100-python/meta", override.get("meta", pickle.dumps(meta, protocol=2)))
        for name, arrays in splits.items():
            archive.add(f"cifar-100-python/{name}", override.get(name, cifar100_batch_bytes(*arrays)))
        archive.add("cifar-100-python/file.txt~", b"")
    return splits


def copy_tar_without(source, target, suffix):
    """A copy of the tar `source` at `target` (uncompressed) without its members named *`suffix`."""
    with tarfile.open(source) as src, tarfile.open(target, "w") as dst:
        for member in src.getmembers():
            if not member.name.endswith(suffix):
                dst.addfile(member, src.extractfile(member))


# The published CIFAR-10-C's files (Zenodo record 2535967): labels.npy and 19 corruptions, named so
CIFAR_C_CORRUPTIONS = (
    *("brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "gaussian_blur"),
    *("gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression", "motion_blur", "pixelate"),
    *("saturate", "shot_noise", "snow", "spatter", "speckle_noise", "zoom_blur"),
)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def cifar_c_arrays(images, labels, seed=0):
    """{file name: array} in the published layout for test `images` and their CIFAR-10 `labels`: labels.npy
    (uint8, the labels once per severity) and each corruption (N x 5, 32, 32, 3) uint8, severities 1-5 as
    consecutive blocks of the images in their order, each block with its own noise, stronger per severity."""
    rng = np.random.default_rng(seed)
    arrays = {"labels.npy": np.tile(np.asarray(labels, np.uint8), 5)}
    for index, name in enumerate(CIFAR_C_CORRUPTIONS):
        blocks = [
            np.clip(images + rng.integers(-1, 2, images.shape) * (12 * severity + 3 * index), 0, 255)
            for severity in range(1, 6)
        ]
        arrays[f"{name}.npy"] = np.concatenate(blocks).astype(np.uint8)
    return arrays


def write_cifar_c(path, arrays, as_tar=True, top="CIFAR-10-C"):
    """`arrays` ({file name: array, or raw bytes}) as CIFAR-10-C.tar is published (an uncompressed tar of a
    folder `top`) at `path`, or as the folder it unpacks to. Returns `path`."""
    files = {name: data if isinstance(data, bytes) else npy_bytes(data) for name, data in arrays.items()}
    if as_tar:
        with tarfile.open(path, "w") as tar:
            for name, data in sorted(files.items()):
                _add_bytes(tar, f"{top}/{name}", data)
    else:
        path.mkdir(parents=True)
        for name, data in files.items():
            (path / name).write_bytes(data)
    return path
