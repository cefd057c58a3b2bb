"""Bring the dataset of `fetch.source` into data/raw: verified, every member read and checked.

Every member of the archive is read and checked here (safe names, no links, bounded
sizes, complete data), so a bad archive fails this stage, not a later one.
"""

import io
import shutil
import tarfile

from cifar.core.atomic import atomic_path
from cifar.core.errors import PipelineError
from cifar.data import sources
from cifar.data.archive import iter_dataset_files


def fetch(settings, artifacts, progress=print):
    """Resolve, verify and copy the dataset to artifacts.raw_dataset (directories are packed as a tar)."""
    path = sources.resolve(settings["source"], settings["retries"], settings["timeout"], progress)
    dest = artifacts.raw_dataset
    with atomic_path(dest) as tmp:
        if path.is_dir():
            count = pack_directory(path, tmp)
        else:
            count = sum(data is not None for _, data in iter_dataset_files(path))
            shutil.copyfile(path, tmp)
        if count == 0:
            raise PipelineError(f"{path}: the dataset is empty")
    remove_other_files(dest)
    progress(f"fetched {settings['source']} -> {dest} ({dest.stat().st_size} bytes)")
    return dest


def pack_directory(root, tar_path):
    """Pack a dataset directory into an uncompressed tar; fixed metadata keeps its hash stable."""
    count = 0
    with tarfile.open(tar_path, "w") as tar:
        for name, data in iter_dataset_files(root):
            if data is None:
                continue
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
            count += 1
    return count


def remove_other_files(dest):
    """Files of an earlier fetch beside `dest` (DVC's own hidden files stay)."""
    for other in dest.parent.iterdir():
        if other != dest and not other.name.startswith("."):
            if other.is_dir():
                shutil.rmtree(other)
            else:
                other.unlink()
