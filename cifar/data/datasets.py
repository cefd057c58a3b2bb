"""Turn a fetched dataset into uint8 arrays, whichever of the layouts it has, told apart by its files.

- the CIFAR-10 Python archive: data_batch_1 ... data_batch_5, test_batch, batches.meta (pickles);
- the CIFAR-10 binary version: data_batch_1.bin ... data_batch_5.bin, test_batch.bin, batches.meta.txt;
- the CIFAR-100 Python archive: train, test, meta (pickles), with fine (100) or coarse (20) labels;
- image folders: train/<class>/<image> and test/<class>/<image> (cifar/data/image_folders.py).

Each may sit in one folder of its own inside the archive or directory, and files that operating
systems leave behind (cifar/data/os_files.py) are skipped.
"""

from dataclasses import dataclass

import numpy as np

from cifar.core.errors import PipelineError
from cifar.data import cifar_binary, cifar_pickle
from cifar.data.archive import iter_dataset_files
from cifar.data.image_folders import read_image_folders
from cifar.data.images import DEFAULT_FITTING, is_image_name
from cifar.data.os_files import is_os_file

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR10_FILES = [*CIFAR10_TRAIN, "test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]
LABEL_SETS = ("fine", "coarse")  # CIFAR-100's two labellings: 100 classes, or their 20 superclasses


@dataclass
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list


def basename(name):
    return name.rstrip("/").rsplit("/", 1)[-1]


LAYOUT_FILES = {*CIFAR10_FILES, *CIFAR100_FILES, *cifar_binary.FILES}


def wanted(name):
    """The files any layout reads; the others are skipped unread."""
    return not is_os_file(name) and (basename(name) in LAYOUT_FILES or is_image_name(name))


def read_dataset(path, labels="fine", progress=print, fitting=DEFAULT_FITTING):
    """The Dataset in an archive or directory; `labels` picks CIFAR-100's fine or coarse classes,
    `fitting` how image folders' pictures become 32x32."""
    files, dirs = {}, set()
    for name, data in iter_dataset_files(path, wanted=wanted):
        if is_os_file(name):
            continue
        if data is None:
            dirs.add(name.rstrip("/"))
        else:
            files[name] = data
    found = {basename(name): name for name in files}
    if labels != "fine" and not set(CIFAR100_FILES) <= set(found):
        raise PipelineError(f"preprocess.labels: {labels!r} labels exist in CIFAR-100 only; {path} is not CIFAR-100")
    if any(name in found for name in CIFAR10_FILES):
        return cifar10_python(files, found, path)
    if any(name in found for name in cifar_binary.FILES):
        return cifar10_binary(files, found, path)
    if "meta" in found and ("train" in found or "test" in found):
        return cifar100_python(files, found, path, labels)
    (x_train, y_train), (x_test, y_test), classes = read_image_folders(files, dirs, path, progress, fitting)
    return Dataset(x_train, y_train, x_test, y_test, classes)


def member_reader(files, found, source, layout, expected):
    """(bytes of a member by its base name, its display name); PipelineError listing what the layout lacks."""
    missing = [name for name in expected if name not in found]
    if missing:
        raise PipelineError(f"{source}: {layout} lacks {', '.join(missing)}")
    return lambda name: files[found[name]], lambda name: f"{source}:{found[name]}"


def cifar10_python(files, found, source):
    read, where = member_reader(files, found, source, "CIFAR-10 archive", CIFAR10_FILES)
    classes = cifar_pickle.parse_meta(read("batches.meta"), where("batches.meta"))
    train = [cifar_pickle.parse_batch(read(name), where(name), len(classes)) for name in CIFAR10_TRAIN]
    x_test, y_test = cifar_pickle.parse_batch(read("test_batch"), where("test_batch"), len(classes))
    return Dataset(*concatenated(train), x_test, y_test, classes)


def cifar10_binary(files, found, source):
    read, where = member_reader(files, found, source, "CIFAR-10 binary archive", cifar_binary.FILES)
    classes = cifar_binary.parse_meta(read(cifar_binary.META_FILE), where(cifar_binary.META_FILE))
    train = [cifar_binary.parse_batch(read(name), where(name), len(classes)) for name in cifar_binary.TRAIN_FILES]
    test = cifar_binary.TEST_FILE
    x_test, y_test = cifar_binary.parse_batch(read(test), where(test), len(classes))
    return Dataset(*concatenated(train), x_test, y_test, classes)


def cifar100_python(files, found, source, labels):
    read, where = member_reader(files, found, source, "CIFAR-100 archive", CIFAR100_FILES)
    classes = cifar_pickle.parse_meta(read("meta"), where("meta"), key=f"{labels}_label_names")
    split = {
        name: cifar_pickle.parse_batch(read(name), where(name), len(classes), label_key=f"{labels}_labels")
        for name in ("train", "test")
    }
    return Dataset(*split["train"], *split["test"], classes)


def concatenated(batches):
    return np.concatenate([images for images, _ in batches]), np.concatenate([labels for _, labels in batches])
