"""Read the regular files of a dataset, safely: a zip or tar archive, or a directory.

Nothing is extracted to disk (cifar/data/members.py checks every member first), so an
untrusted archive can neither write outside its folder nor fill the disk.
"""

import os
from pathlib import Path

from cifar.core.errors import PipelineError
from cifar.data.tar_archive import iter_tar_files
from cifar.data.zip_archive import ZIP_MAGICS, iter_zip_files


def iter_archive_files(path, wanted=lambda name: True):
    """Yield (name, bytes) for each regular file of a zip or tar archive, told apart by their content.

    Directory entries are yielded as (name + '/', None) so empty folders are seen.
    `wanted(name)` decides which files are read; the others are skipped unread.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: file not found") from err
    if magic.startswith(ZIP_MAGICS):
        return iter_zip_files(path, wanted)
    return iter_tar_files(path, wanted)


def iter_directory_files(root, wanted=lambda name: True):
    """Yield (relative name, bytes) for each regular file under a directory, like iter_archive_files."""
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        if prefix:
            yield prefix, None
        for dirname in dirnames:
            if (Path(dirpath) / dirname).is_symlink():
                raise PipelineError(f"{root}: refusing {prefix + dirname!r}: it is a symbolic link")
        for filename in sorted(filenames):
            full = Path(dirpath) / filename
            name = prefix + filename
            if full.is_symlink():
                raise PipelineError(f"{root}: refusing {name!r}: it is a symbolic link")
            if not full.is_file():
                raise PipelineError(f"{root}: refusing {name!r}: not a regular file")
            if wanted(name):
                yield name, full.read_bytes()


def iter_dataset_files(path, wanted=lambda name: True):
    """Files of a dataset given as an archive or a directory."""
    path = Path(path)
    if path.is_dir():
        return iter_directory_files(path, wanted)
    return iter_archive_files(path, wanted)
