"""The image-folder layout: train/<class>/<image> and test/<class>/<image>, optionally in one top folder.

Class names are the folder names, sorted. Images of every format Pillow opens are accepted
(extensions matched case-insensitively), HEIC too; each becomes the 32x32 RGB picture a viewer shows,
fitted by preprocess.aspect and .background (cifar/data/images.py).
The files operating systems and file managers leave behind are skipped silently (cifar/data/os_files.py).
"""

import os
import re
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np

from cifar.core.errors import PipelineError
from cifar.data.images import DEFAULT_FITTING, IMAGE_SIZE, decode_image

EXPECTED = (
    "a CIFAR archive (CIFAR-10 Python or binary, CIFAR-100 Python) or "
    "image folders train/<class>/<image> and test/<class>/<image>"
)


_SPLIT_RE = re.compile(r"^(?:(?P<prefix>[^/]+)/)?(?P<split>train|test)/(?P<cls>[^/]+)(?:/(?P<file>.+))?$")


def read_image_folders(files, dirs, source, progress, fitting=DEFAULT_FITTING):
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
        raise PipelineError(f"{source}: no dataset found; expected {EXPECTED}")
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
    x_train, y_train = _decode_split(files, layout["train"], classes, source, "train", progress, fitting)
    x_test, y_test = _decode_split(files, layout["test"], classes, source, "test", progress, fitting)
    return (x_train, y_train), (x_test, y_test), classes


DECODE_CHUNK = 2000


def _decode_chunk(items, fitting):
    """Decode [(source, bytes)] to one uint8 array; runs in a worker process."""
    return np.stack([decode_image(data, source, fitting) for source, data in items])


def _decode_split(files, per_class, classes, source, split, progress, fitting):
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
        for array in pool.map(partial(_decode_chunk, fitting=fitting), chunks):
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
