"""fetch: local datasets, and download descriptors: file:// URLs, the Keras cache, and real downloads
from a loopback HTTP server."""

import hashlib
import tarfile
from pathlib import Path

import pytest
import yaml

from benchmarks.workspace import PROJECT, set_params
from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.data import download, sources
from cifar.data.fetching import fetch
from stages.fetch import main
from tests.datagen import write_cifar_archive, write_image_folder_archive
from tests.helpers import serving


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def server(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(archive)
    with serving(archive) as (handler, url):
        yield handler, url, archive


def quiet(message):
    pass


def descriptor(folder, url, checksum=None, name="source.yaml"):
    """A download descriptor file: what data/sources/*.yaml hold."""
    path = Path(folder) / name
    path.write_text(yaml.safe_dump({"url": url, "checksum": checksum}))
    return path


def fetch_source(workspace, source, retries=1, timeout=10):
    return fetch({"source": str(source), "retries": retries, "timeout": timeout}, Artifacts(workspace), quiet)


def earlier_output(workspace):
    """A good data/raw/dataset from an earlier run, which a failing fetch must leave as it is."""
    out = Artifacts(workspace).raw_dataset
    out.parent.mkdir(parents=True)
    out.write_bytes(b"good earlier output")


def test_download_verifies_and_caches(workspace, server):
    handler, url, archive = server
    source = descriptor(workspace, url, f"md5:{md5(archive)}")
    dest = fetch_source(workspace, source)
    assert dest.read_bytes() == archive.read_bytes()
    cached = workspace / "keras_home" / "datasets" / "cifar-10-python.tar.gz"
    assert cached.read_bytes() == archive.read_bytes()
    assert handler.requests == 1
    fetch_source(workspace, source)
    assert handler.requests == 1  # second run served from the Keras cache


def test_a_transfer_cut_short_is_retried_then_fails_leaving_nothing(workspace, server, monkeypatch):
    handler, url, archive = server
    handler.mode = "truncate"  # a third of the announced bytes, then the connection drops
    earlier_output(workspace)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(PipelineError, match="download failed after 3 attempts: .*retrieval incomplete"):
        fetch_source(workspace, descriptor(workspace, url, f"md5:{md5(archive)}"), retries=3)
    assert handler.requests == 3
    cache = workspace / "keras_home" / "datasets"
    assert list(cache.iterdir()) == [], "a failed download is not kept"
    assert Artifacts(workspace).raw_dataset.read_bytes() == b"good earlier output"


def test_a_complete_download_with_the_wrong_checksum_is_not_retried(workspace, server, monkeypatch):
    """The server sends every announced byte, but not the bytes the descriptor's checksum names (a typo in the
    checksum, or a file replaced upstream): one request, one line naming both digests, no copy cached."""
    handler, url, archive = server
    handler.mode = "corrupt"
    earlier_output(workspace)
    monkeypatch.setattr(download.time, "sleep", lambda s: pytest.fail("retried"))
    served = bytes([archive.read_bytes()[0] ^ 0xFF]) + archive.read_bytes()[1:]
    expected, actual = md5(archive), hashlib.md5(served).hexdigest()
    with pytest.raises(PipelineError) as raised:
        fetch_source(workspace, descriptor(workspace, url, f"md5:{expected}"), retries=3)
    assert str(raised.value) == (
        f"{url}: downloaded whole, but its md5 is {actual}, not the expected {expected}; not retried, as the "
        "server would send the same bytes (check the checksum in its descriptor)"
    )
    assert handler.requests == 1
    assert list((workspace / "keras_home" / "datasets").iterdir()) == [], "the Keras cache keeps no bad copy"
    assert Artifacts(workspace).raw_dataset.read_bytes() == b"good earlier output"


def test_partial_file_in_cache_is_not_taken_as_good(workspace, server):
    handler, url, archive = server
    cache = workspace / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    (cache / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes()[:1000])  # as a kill -9 mid-download leaves
    fetch_source(workspace, descriptor(workspace, url, f"md5:{md5(archive)}"))
    assert handler.requests == 1
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()


@pytest.mark.parametrize(
    "name, md5",
    [
        ("cifar-10-python", "c58f30108f718f92721af3b95e74349a"),
        ("cifar-10-binary", "c32a1d4ab5d03f1284b67883e8d87530"),
        ("cifar-100-python", "eb9058c3a382ffc7106e4002c42a8d85"),
    ],
)
def test_the_official_descriptors_name_the_official_archives(name, md5):
    official = sources.read_descriptor(PROJECT / f"data/sources/{name}.yaml")
    assert official.url == f"https://www.cs.toronto.edu/~kriz/{name}.tar.gz"
    assert official.checksum == ("md5", md5)


def test_the_default_source_is_the_official_cifar10_python_archive():
    assert (
        yaml.safe_load((PROJECT / "params.yaml").read_text())["fetch"]["source"] == "data/sources/cifar-10-python.yaml"
    )


def test_keras_cache_of_the_official_archive_is_used_without_network(workspace, monkeypatch):
    """The archive keras.datasets.cifar10 cached: no download when its checksum matches."""
    cache = workspace / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    write_cifar_archive(cache / "cifar-10-batches-py-target_archive")
    monkeypatch.setattr(download, "download", lambda *a, **k: pytest.fail("must not download"))
    official = sources.read_descriptor(PROJECT / "data/sources/cifar-10-python.yaml").url
    source = descriptor(workspace, official, f"md5:{md5(cache / 'cifar-10-batches-py-target_archive')}")
    assert md5(fetch_source(workspace, source)) == md5(cache / "cifar-10-batches-py-target_archive")


def test_wrong_checksum_names_file_and_both_digests(workspace, capsys):
    archive = workspace / "local.tar.gz"
    write_cifar_archive(archive)
    source = descriptor(workspace, archive.as_uri(), "md5:" + "0" * 32)
    set_params(workspace, fetch={"source": str(source)})
    assert cli.run(main, []) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {archive}: md5 checksum mismatch: expected {'0' * 32}, got {md5(archive)}"


@pytest.mark.parametrize(
    "content, message",
    [
        ({"checksum": None}, "holds `url` and `checksum`"),
        ({"url": "https://example.org/a.tar.gz", "sha1": "ab"}, "holds `url` and `checksum`"),
        ({"url": "ftp://example.org/a.tar.gz"}, "must be an https://, http:// or file:// URL"),
        ({"url": "https://example.org/a.tar.gz", "checksum": "md5:123"}, "checksum 'md5:123' must be null, md5:"),
        ("not: [a mapping", "not a readable download descriptor"),
    ],
)
def test_bad_descriptors_are_refused_in_one_line(workspace, capsys, content, message):
    path = workspace / "bad.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    set_params(workspace, fetch={"source": str(path)})
    assert cli.run(main, []) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}: ") and message in err and "\n" not in err


@pytest.mark.parametrize("as_url", [False, True])
def test_local_archive_and_file_url(workspace, as_url):
    archive = workspace / "images.tar.gz"
    write_image_folder_archive(archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    source = descriptor(workspace, archive.as_uri(), f"sha256:{sha}") if as_url else archive
    assert fetch_source(workspace, source).read_bytes() == archive.read_bytes()


def test_directory_source_is_packed(workspace):
    archive = workspace / "images.tar"
    write_image_folder_archive(archive, train=10, test=10)
    folder = workspace / "images"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    dest = fetch_source(workspace, folder)
    with tarfile.open(dest) as packed, tarfile.open(archive) as original:
        assert sorted(packed.getnames()) == sorted(m.name for m in original.getmembers() if m.isfile())


def test_missing_and_truncated_sources(workspace, capsys):
    set_params(workspace, fetch={"source": str(workspace / "nope.tar.gz")})
    assert cli.run(main, []) == 2
    assert "does not exist" in capsys.readouterr().err

    earlier_output(workspace)
    archive = workspace / "t.tar.gz"
    write_cifar_archive(archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    set_params(workspace, fetch={"source": str(archive)})
    assert cli.run(main, []) == 2
    assert f"{archive}: archive is truncated" in capsys.readouterr().err
    assert Artifacts(workspace).raw_dataset.read_bytes() == b"good earlier output"


def test_without_a_checksum_the_source_is_downloaded_afresh_each_time(workspace, server):
    handler, url, archive = server
    source = descriptor(workspace, url)
    for expected_requests in (1, 2):
        assert fetch_source(workspace, source).read_bytes() == archive.read_bytes()
        assert handler.requests == expected_requests


def test_a_stalled_download_times_out_after_fetch_timeout(workspace):
    archive = workspace / "my-images.tar.gz"
    write_image_folder_archive(archive)
    stalled = pytest.raises(PipelineError, match=r"download failed after 1 attempts: .*timed out")
    with serving(archive, mode="stall") as (_, url), stalled:
        fetch_source(workspace, descriptor(workspace, url), timeout=0.5)
