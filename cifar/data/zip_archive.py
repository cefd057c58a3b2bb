"""Read the regular files of an untrusted zip archive with the standard library's zipfile.

Members are checked by cifar/data/members.py before anything is read: names, and the declared
(uncompressed) sizes that bound what decompressing may produce, so a zip bomb stops at its headers.
Links, special files and encrypted members are refused; a cut or damaged archive is named as such.
"""

import stat
import zipfile
import zlib

from cifar.core.errors import PipelineError
from cifar.data import members

ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a first member, or the end record of an empty zip


def iter_zip_files(path, wanted=lambda name: True):
    """Yield (name, bytes) for each regular file of a zip archive; directories as (name + '/', None)."""
    budget = members.MemberBudget(path)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                budget.add_member()
                name = members.check_member_name(info.filename, path)
                mode = info.external_attr >> 16  # Unix mode, when a Unix tool made the zip (type bits or not)
                if stat.S_ISLNK(mode):
                    raise PipelineError(f"{path}: refusing member {info.filename!r}: it is a symbolic link")
                if info.is_dir():
                    yield name + "/", None
                    continue
                if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
                    raise PipelineError(f"{path}: refusing member {info.filename!r}: not a regular file")
                if info.flag_bits & 0x1:
                    raise PipelineError(f"{path}: refusing member {info.filename!r}: it is encrypted")
                budget.add_size(info.filename, info.file_size)
                if not wanted(name):
                    continue
                # zipfile stops at the declared size and checks the CRC: a lying header cannot expand further
                data = archive.read(info)
                if len(data) != info.file_size:
                    raise PipelineError(f"{path}: archive is truncated (member {info.filename!r} is cut short)")
                yield name, data
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as err:
        raise PipelineError(f"{path}: zip archive is truncated or corrupt: {err}") from err
