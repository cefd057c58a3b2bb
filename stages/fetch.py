"""Stage fetch: bring the dataset named by `fetch.source` into data/raw/, verified and checked.

Every member of the archive is read and checked here (safe names, no links,
bounded sizes, complete data), so a bad archive fails this stage, not a later one.
"""

import io
import shutil
import tarfile
import sys
from pathlib import Path

from stages.archive import iter_dataset_files
from stages.atomic import atomic_path
from stages.download import parse_checksum, resolve_source
from stages.errors import PipelineError, run_stage
from stages.params import load_section

RAW_DIR = Path("data/raw")
RAW_ARCHIVE = RAW_DIR / "dataset"


def fetch(source, checksum=None, retries=3, timeout=60.0, dest=RAW_ARCHIVE, progress=print):
    """Resolve, verify and copy the dataset to `dest` (a tar archive; directories are packed)."""
    path = resolve_source(source, parse_checksum(checksum, source), retries, timeout, progress)
    with atomic_path(dest) as tmp:
        if path.is_dir():
            count = _pack_directory(path, tmp)
        else:
            count = sum(data is not None for _, data in iter_dataset_files(path))
            shutil.copyfile(path, tmp)
        if count == 0:
            raise PipelineError(f"{path}: the dataset is empty")
    _remove_other_files(dest)
    progress(f"fetched {source} -> {dest} ({dest.stat().st_size} bytes)")
    return dest


def _pack_directory(root, tar_path):
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


def _remove_other_files(dest):
    for other in dest.parent.iterdir():
        if other != dest and not other.name.startswith("."):
            if other.is_dir():
                shutil.rmtree(other)
            else:
                other.unlink()


def main(argv=None):
    params = load_section("fetch")
    fetch(params["source"], params["checksum"], params["retries"], params["timeout"])


if __name__ == "__main__":
    sys.exit(run_stage(main))
