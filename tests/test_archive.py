"""Untrusted archives, tar and zip: every member checked before a byte of it is used."""

import io
import stat
import tarfile
import zipfile

import numpy as np
import pytest

from cifar.core.errors import PipelineError
from cifar.data import members
from cifar.data.archive import iter_archive_files, iter_directory_files
from cifar.data.datasets import read_dataset
from cifar.data.members import MAX_MEMBER_BYTES
from tests.datagen import encode_image, random_images, write_image_folder_archive


def make_tar(path, members, mode="w"):
    """members: (TarInfo, bytes or None) pairs."""
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_member(name, data=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def link_member(name, target, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def read_all(path):
    return dict(iter_archive_files(path))


def test_reads_regular_files_and_directories(tmp_path):
    folder = tarfile.TarInfo("train")
    folder.type = tarfile.DIRTYPE
    path = make_tar(tmp_path / "a.tar.gz", [(folder, None), file_member("train/a.png", b"abc")], "w:gz")
    assert read_all(path) == {"train/": None, "train/a.png": b"abc"}


@pytest.mark.parametrize(
    "member, message",
    [
        (file_member("/etc/passwd"), "absolute path"),
        (file_member("../escape.txt"), "contains '..'"),
        (file_member("train/../../escape.txt"), "contains '..'"),
        (link_member("train/cat/link.png", "/etc/passwd", tarfile.SYMTYPE), "is a link"),
        (link_member("train/cat/hard.png", "../../outside", tarfile.LNKTYPE), "is a link"),
        (link_member("train/dev", "", tarfile.CHRTYPE), "not a regular file"),
    ],
)
def test_hostile_members_are_refused(tmp_path, member, message):
    path = make_tar(tmp_path / "bad.tar", [file_member("ok.txt"), member])
    yielded = []
    with pytest.raises(PipelineError, match=message):
        for name, _ in iter_archive_files(path):
            yielded.append(name)
    assert yielded == ["ok.txt"], "the hostile member must be refused before anything reads it"


def test_decompression_bomb_stops_before_reading(tmp_path):
    # A member that declares more than the limit: refused from its header, nothing read.
    info = tarfile.TarInfo("cifar-10-batches-py/data_batch_1")
    info.size = MAX_MEMBER_BYTES + 1
    path = tmp_path / "bomb.tar"
    with open(path, "wb") as f:
        f.write(info.tobuf())
        f.write(b"\0" * 4096)  # far less data than declared: a bomb or a truncated file alike
    with pytest.raises(PipelineError, match="exceeds the limit"):
        read_all(path)


@pytest.mark.parametrize("content", [b"", b"this is not an archive at all" * 10])
def test_not_an_archive(tmp_path, content):
    path = tmp_path / "junk.tar.gz"
    path.write_bytes(content)
    with pytest.raises(PipelineError, match="not an archive: expected a zip, or a tar"):
        read_all(path)


def test_truncated_archive(tmp_path):
    path = make_tar(tmp_path / "t.tar.gz", [file_member(f"f{i}", bytes(range(256)) * 40) for i in range(20)], "w:gz")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match="truncated"):
        read_all(path)


def test_directory_with_symlink_is_refused(tmp_path):
    (tmp_path / "d/train/cat").mkdir(parents=True)
    (tmp_path / "d/train/cat/a.png").write_bytes(b"a")
    (tmp_path / "d/train/cat/b.png").symlink_to("/etc/passwd")
    with pytest.raises(PipelineError, match="symbolic link"):
        dict(iter_directory_files(tmp_path / "d"))


def test_gzip_bomb_stops_at_the_total_limit(tmp_path, monkeypatch):
    import cifar.data.members as members

    monkeypatch.setattr(members, "MAX_TOTAL_BYTES", 4 << 20)
    zeros = b"\0" * (16 << 20)  # compresses to a few KB, unpacks past the (lowered) limit
    path = make_tar(tmp_path / "bomb.tar.gz", [file_member("train/cat/a.png", zeros)], "w:gz")
    assert path.stat().st_size < 100_000
    with pytest.raises(PipelineError, match="unpacks to more than"):
        read_all(path)


@pytest.mark.parametrize("compression", ["", "gz", "bz2", "xz"])
def test_every_compression_reads_and_a_cut_is_named(tmp_path, compression):
    members = [file_member(f"train/cat/{i}.png", bytes(range(256)) * 40) for i in range(20)]
    path = make_tar(tmp_path / f"a.tar{'.' + compression if compression else ''}", members, f"w:{compression}")
    assert read_all(path) == {info.name: data for info, data in members}
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(PipelineError, match="truncated"):
        read_all(path)


def test_member_count_is_bounded(tmp_path, monkeypatch):
    import cifar.data.members as members

    monkeypatch.setattr(members, "MAX_MEMBERS", 5)
    assert len(read_all(make_tar(tmp_path / "five.tar", [file_member(f"{i}.png") for i in range(5)]))) == 5
    with pytest.raises(PipelineError, match="more than 5 members; refusing"):
        read_all(make_tar(tmp_path / "six.tar", [file_member(f"{i}.png") for i in range(6)]))


def test_total_size_is_bounded_for_plain_tars_too(tmp_path, monkeypatch):
    import cifar.data.members as members

    monkeypatch.setattr(members, "MAX_TOTAL_BYTES", 64 << 10)
    small = [file_member(f"{i}.png", b"x" * (10 << 10)) for i in range(3)]
    assert len(read_all(make_tar(tmp_path / "small.tar", small))) == 3
    large = [file_member(f"{i}.png", b"x" * (10 << 10)) for i in range(8)]  # 80 KiB of members
    with pytest.raises(PipelineError, match="unpacks to more than"):
        read_all(make_tar(tmp_path / "large.tar", large))


# Hostile zips: the same refusals as the tar's above.


def zip_with(path, entries):
    """entries: (ZipInfo or name, bytes)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("train/cat/ok.png", encode_image(random_images(1, np.random.default_rng(0))[0][0]))
        for info, data in entries:
            archive.writestr(info, data)
    return path


def symlink_info(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def fifo_info(name):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    return info


@pytest.mark.parametrize(
    "entry, message",
    [
        (("../escape.txt", b"x"), "contains '..'"),
        (("train/../../escape.png", b"x"), "contains '..'"),
        (("/etc/cron.d/evil", b"x"), "absolute path"),
        (("C:\\Windows\\evil.png", b"x"), "absolute path"),
        ((symlink_info("train/cat/link.png"), b"/etc/passwd"), "is a symbolic link"),
        ((fifo_info("train/cat/pipe"), b""), "not a regular file"),
    ],
)
def test_hostile_zip_members_are_refused_before_anything_is_read(tmp_path, entry, message):
    path = zip_with(tmp_path / "bad.zip", [entry])
    yielded = []
    with pytest.raises(PipelineError, match=message):
        for name, _ in iter_archive_files(path):
            yielded.append(name)
    assert yielded == ["train/cat/ok.png"]


def test_a_zip_bomb_stops_at_its_declared_sizes(tmp_path, monkeypatch):
    monkeypatch.setattr(members, "MAX_TOTAL_BYTES", 4 << 20)
    path = zip_with(tmp_path / "bomb.zip", [(f"train/cat/{i}.png", b"\0" * (1 << 20)) for i in range(8)])
    assert path.stat().st_size < 100_000  # 8 MB of zeros in a few KB
    with pytest.raises(PipelineError, match="unpacks to more than"):
        list(iter_archive_files(path))


def test_a_zip_that_lies_about_its_size_is_caught(tmp_path):
    """A member whose header declares fewer bytes than its data holds: zipfile stops there, the CRC fails."""
    path = zip_with(tmp_path / "liar.zip", [("train/cat/big.png", b"\1" * 100_000)])
    data = bytearray(path.read_bytes())
    header = data.index(b"PK\x01\x02", data.index(b"train/cat/big.png"))  # its central directory record
    data[header + 24 : header + 28] = (10).to_bytes(4, "little")  # uncompressed size: 10 bytes
    path.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="zip archive is truncated or corrupt"):
        list(iter_archive_files(path))


def test_a_truncated_or_corrupt_zip_is_named_as_such(tmp_path):
    path = tmp_path / "cut.zip"
    write_image_folder_archive(path)
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(PipelineError, match="cut.zip: zip archive is truncated or corrupt"):
        list(iter_archive_files(path))
    corrupt = bytearray(whole)
    first = corrupt.index(b"PK\x03\x04")
    corrupt[first + 200] ^= 0xFF  # inside the first member's compressed data
    path.write_bytes(bytes(corrupt))
    with pytest.raises(PipelineError, match="zip archive is truncated or corrupt"):
        list(iter_archive_files(path))


def test_an_encrypted_member_is_refused(tmp_path):
    path = zip_with(tmp_path / "secret.zip", [("train/cat/secret.png", b"x" * 10)])
    data = bytearray(path.read_bytes())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        at = data.rindex(signature)
        data[at + flag_offset] |= 0x1
    path.write_bytes(bytes(data))
    with pytest.raises(PipelineError, match="is encrypted"):
        list(iter_archive_files(path))


def test_an_empty_zip_is_an_empty_dataset(tmp_path):
    path = tmp_path / "empty.zip"
    zipfile.ZipFile(path, "w").close()
    assert list(iter_archive_files(path)) == []
    with pytest.raises(PipelineError, match="no dataset found"):
        read_dataset(path, progress=lambda message: None)


def test_not_an_archive_is_named(tmp_path):
    path = tmp_path / "notes.zip"
    path.write_bytes(io.BytesIO(b"just text, not a zip").getvalue())
    with pytest.raises(PipelineError, match="not an archive: expected a zip, or a tar"):
        list(iter_archive_files(path))
