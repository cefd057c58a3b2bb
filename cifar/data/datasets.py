"""Turn a fetched dataset (CIFAR-10 Python archive or image folders) into uint8 arrays.

Two layouts are understood:
- the official CIFAR-10 Python archive: `cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`;
- image folders: `train/<class>/*.{png,jpg,jpeg}` and `test/<class>/*...`, optionally
  under one top-level folder. Images of any mode or size are converted to RGB and
  resized to 32x32 (area-averaged when shrinking, bilinear when enlarging); class names are the folder names.
"""

import os
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from cifar.core.errors import PipelineError
from cifar.data.archive import iter_dataset_files
from cifar.data.cifar_pickle import parse_batch, parse_meta
from cifar.data.images import IMAGE_SIZE, decode_image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
CIFAR_TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_FILES = CIFAR_TRAIN_BATCHES + ["test_batch", "batches.meta"]


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list


def _is_cifar_member(name):
    return name.rsplit("/", 1)[-1] in CIFAR_FILES


def _is_image_member(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_dataset(path, progress=print):
    """Read a dataset archive or directory, whichever layout it has."""
    files = {}
    dirs = set()
    for name, data in iter_dataset_files(path, wanted=lambda n: _is_cifar_member(n) or _is_image_member(n)):
        if data is None:
            dirs.add(name.rstrip("/"))
        else:
            files[name] = data
    if any(_is_cifar_member(name) for name in files):
        return _cifar_from_files(files, path)
    return _image_folders_from_files(files, dirs, path, progress)


def _cifar_from_files(files, source):
    by_base = {name.rsplit("/", 1)[-1]: name for name in files if _is_cifar_member(name)}
    missing = [f for f in CIFAR_FILES if f not in by_base]
    if missing:
        raise PipelineError(f"{source}: CIFAR-10 archive lacks {', '.join(missing)}")
    classes = parse_meta(files[by_base["batches.meta"]], f"{source}:{by_base['batches.meta']}")
    parts = [parse_batch(files[by_base[b]], f"{source}:{by_base[b]}", len(classes)) for b in CIFAR_TRAIN_BATCHES]
    x_test, y_test = parse_batch(files[by_base["test_batch"]], f"{source}:{by_base['test_batch']}", len(classes))
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return Dataset(x_train, y_train, x_test, y_test, classes)


_SPLIT_RE = re.compile(r"^(?:(?P<prefix>[^/]+)/)?(?P<split>train|test)/(?P<cls>[^/]+)(?:/(?P<file>.+))?$")


def _image_folders_from_files(files, dirs, source, progress):
    layout = {"train": {}, "test": {}}
    prefixes = set()
    for name in sorted(dirs) + sorted(files):
        match = _SPLIT_RE.match(name)
        if not match:
            continue
        prefixes.add(match["prefix"])
        per_class = layout[match["split"]].setdefault(match["cls"], [])
        if match["file"] and name in files:
            if "/" in match["file"]:
                raise PipelineError(f"{source}: {name!r} is nested too deep; expected <split>/<class>/<image>")
            per_class.append(name)
    if len(prefixes) > 1:
        raise PipelineError(f"{source}: images under several top-level folders: {sorted(map(str, prefixes))}")
    if not layout["train"] and not layout["test"]:
        raise PipelineError(
            f"{source}: no dataset found; expected the CIFAR-10 Python archive or "
            "image folders train/<class>/*.png|jpg and test/<class>/*.png|jpg"
        )
    for split in ("train", "test"):
        if not layout[split]:
            raise PipelineError(f"{source}: no {split}/<class>/ folders")
        for cls, names in layout[split].items():
            if not names:
                raise PipelineError(f"{source}: class folder {split}/{cls} has no images")
    classes = sorted(layout["train"])
    if sorted(layout["test"]) != classes:
        only_train = sorted(set(classes) - set(layout["test"]))
        only_test = sorted(set(layout["test"]) - set(classes))
        raise PipelineError(
            f"{source}: class folders differ between train and test "
            f"(only in train: {only_train or 'none'}; only in test: {only_test or 'none'})"
        )
    x_train, y_train = _decode_split(files, layout["train"], classes, source, "train", progress)
    x_test, y_test = _decode_split(files, layout["test"], classes, source, "test", progress)
    return Dataset(x_train, y_train, x_test, y_test, classes)


DECODE_CHUNK = 2000


def _decode_chunk(items):
    """Decode [(source, bytes)] to one uint8 array; runs in a worker process."""
    return np.stack([decode_image(data, source) for source, data in items])


def _decode_split(files, per_class, classes, source, split, progress):
    """Decode one split's images, in parallel over the CPU cores, in a fixed order."""
    names = [(label, name) for label, cls in enumerate(classes) for name in sorted(per_class[cls])]
    labels = np.array([label for label, _ in names], dtype=np.int64)
    chunks = [
        [(f"{source}:{name}", files[name]) for _, name in names[i : i + DECODE_CHUNK]]
        for i in range(0, len(names), DECODE_CHUNK)
    ]
    workers = min(os.cpu_count() or 1, len(chunks))
    decoded, done = [], 0
    with ProcessPoolExecutor(workers) if workers > 1 else _InProcess() as pool:
        for array in pool.map(_decode_chunk, chunks):
            decoded.append(array)
            done += len(array)
            if done % 10_000 < DECODE_CHUNK or done == len(names):
                progress(f"decoded {split} images: {done}/{len(names)}")
    images = np.concatenate(decoded) if decoded else np.empty((0, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    return images, labels


class _InProcess:
    """The executor interface, run serially: for one core or one chunk, where processes cost more."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)
