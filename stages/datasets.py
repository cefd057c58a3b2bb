"""Turn a fetched dataset (CIFAR-10 Python archive or image folders) into uint8 arrays.

Two layouts are understood:
- the official CIFAR-10 Python archive: `cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`;
- image folders: `train/<class>/*.{png,jpg,jpeg}` and `test/<class>/*...`, optionally
  under one top-level folder. Images of any mode or size are converted to RGB and
  resized to 32x32 (area-averaged when shrinking, bilinear when enlarging); class names are the folder names.
"""
import io
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from stages.archive import iter_dataset_files
from stages.cifar_pickle import IMAGE_SIZE, parse_batch, parse_meta
from stages.errors import PipelineError

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


def _decode_split(files, per_class, classes, source, split, progress):
    names = [(label, name) for label, cls in enumerate(classes) for name in sorted(per_class[cls])]
    images = np.empty((len(names), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    labels = np.empty(len(names), dtype=np.int64)
    report_every = max(1, len(names) // 5)
    for i, (label, name) in enumerate(names):
        images[i] = decode_image(files[name], f"{source}:{name}")
        labels[i] = label
        if (i + 1) % report_every == 0 or i + 1 == len(names):
            progress(f"decoded {split} images: {i + 1}/{len(names)}")
    return images, labels


def decode_image(data, source):
    """Decode any image Pillow reads to a 32x32 RGB uint8 array."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise PipelineError(f"{source}: cannot decode image: {err}") from err
    if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
        # Area averaging when shrinking (no aliasing), bilinear when enlarging.
        shrinking = rgb.size[0] > IMAGE_SIZE or rgb.size[1] > IMAGE_SIZE
        rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR)
    return np.asarray(rgb, dtype=np.uint8)
