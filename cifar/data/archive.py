"""Read the regular files of an untrusted tar archive or a directory, safely.

Nothing is extracted to disk. Members that are absolute, contain '..', are
links or devices are refused, and declared sizes are bounded before anything
is read, so a decompression bomb stops before it fills memory or disk.
"""

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib
from pathlib import Path, PurePosixPath

from cifar.core.errors import PipelineError

MAX_MEMBER_BYTES = 256 << 20  # larger than any CIFAR batch (31 MB) by far
MAX_TOTAL_BYTES = 1 << 30  # the CIFAR-10 Python archive unpacks to 178 MB, the JPEG copy to 93 MB
MAX_MEMBERS = 500_000


def check_member_name(name, archive):
    """Refuse names that would escape the dataset's root if extracted."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or (len(name) > 1 and name[1] == ":"):
        raise PipelineError(f"{archive}: refusing member {name!r}: absolute path")
    if ".." in posix.parts:
        raise PipelineError(f"{archive}: refusing member {name!r}: path contains '..'")
    return "/".join(part for part in posix.parts if part not in ("", "."))


_OPENERS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}
_END_OF_ARCHIVE = b"\0" * 1024  # a tar ends with two zero blocks


def read_complete_tar(path):
    """The decompressed bytes of a tar archive; PipelineError unless it is one, and whole.

    A compressed stream cut short is named as truncated, not as "not a tar archive".
    tarfile stops quietly at a cut that falls between members, so truncation is
    checked here: the compressed stream must end properly and the tar must end
    with its end-of-archive blocks. Reading stops at MAX_TOTAL_BYTES (bombs).
    Parsing the tar from memory afterwards is 3x faster than tarfile's stream mode.
    """
    with open(path, "rb") as f:
        magic = f.read(6)
    opener = next((op for prefix, op in _OPENERS.items() if magic.startswith(prefix)), open)
    if opener is open and not tarfile.is_tarfile(path):  # uncompressed: tell at once, before reading it all
        raise PipelineError(f"{path}: not a tar archive (plain, .gz, .bz2 or .xz)")
    chunks, size = [], 0
    try:
        with opener(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                size += len(chunk)
                if size > MAX_TOTAL_BYTES:
                    raise PipelineError(f"{path}: archive unpacks to more than {MAX_TOTAL_BYTES} bytes; refusing")
                chunks.append(chunk)
    except (EOFError, OSError, zlib.error, lzma.LZMAError) as err:
        raise PipelineError(f"{path}: archive is truncated or corrupt: {err}") from err
    data = b"".join(chunks)
    if not tarfile.is_tarfile(io.BytesIO(data)):
        raise PipelineError(f"{path}: not a tar archive (plain, .gz, .bz2 or .xz)")
    if data[-len(_END_OF_ARCHIVE) :] != _END_OF_ARCHIVE:
        raise PipelineError(f"{path}: archive is truncated (no end-of-archive marker)")
    return data


def iter_archive_files(path, wanted=lambda name: True):
    """Yield (name, bytes) for each regular file of a tar archive (any compression).

    Directory entries are yielded as (name + '/', None) so empty folders are seen.
    `wanted(name)` decides which files are read; the others are skipped unread.
    """
    total = 0
    count = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(read_complete_tar(path)), mode="r:") as tar:
            for member in tar:
                count += 1
                if count > MAX_MEMBERS:
                    raise PipelineError(f"{path}: more than {MAX_MEMBERS} members; refusing")
                name = check_member_name(member.name, path)
                if member.issym() or member.islnk():
                    raise PipelineError(f"{path}: refusing member {member.name!r}: it is a link to {member.linkname!r}")
                if member.isdir():
                    yield name + "/", None
                    continue
                if not member.isfile():
                    raise PipelineError(f"{path}: refusing member {member.name!r}: not a regular file")
                if member.size > MAX_MEMBER_BYTES:
                    raise PipelineError(
                        f"{path}: refusing member {member.name!r}: declared size {member.size} bytes "
                        f"exceeds the limit of {MAX_MEMBER_BYTES}"
                    )
                total += member.size
                if total > MAX_TOTAL_BYTES:
                    raise PipelineError(f"{path}: archive unpacks to more than {MAX_TOTAL_BYTES} bytes; refusing")
                if not wanted(name):
                    continue
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise PipelineError(f"{path}: archive is truncated (member {member.name!r} is cut short)")
                yield name, data
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        if isinstance(err, FileNotFoundError):
            raise PipelineError(f"{path}: file not found") from err
        raise PipelineError(f"{path}: not a readable tar archive, or truncated: {err}") from err


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
    """Files of a dataset given as a tar archive or a directory."""
    path = Path(path)
    if path.is_dir():
        return iter_directory_files(path, wanted)
    return iter_archive_files(path, wanted)
