"""fetch: local paths, file:// URLs, the Keras cache, and real downloads from a loopback HTTP server."""

import hashlib
import http.server
import tarfile
import threading
from pathlib import Path

import pytest

from stages import download
from stages.errors import PipelineError, run_stage
from stages.fetch import fetch, main
from tests.conftest import set_params
from tests.datagen import write_cifar_archive, write_image_folder_archive


def md5(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves `payload`; in 'truncate' mode it promises more bytes than it sends, then hangs up."""

    payload = b""
    mode = "ok"
    requests = 0

    def do_GET(self):  # noqa: N802 (http.server's naming)
        type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        if self.mode == "truncate":
            self.send_header("Content-Length", str(len(self.payload)))
            self.end_headers()
            self.wfile.write(self.payload[: len(self.payload) // 3])
            self.wfile.flush()
            self.connection.close()
            return
        body = self.payload
        if self.mode == "corrupt":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    write_cifar_archive(archive)
    handler = type("Handler", (_Handler,), {"payload": archive.read_bytes(), "mode": "ok", "requests": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/cifar-10-python.tar.gz", archive
    httpd.shutdown()
    httpd.server_close()


def quiet(message):
    pass


def earlier_output(workspace):
    """A good data/raw/dataset from an earlier run, which a failing fetch must leave as it is."""
    out = workspace / "data/raw/dataset"
    out.parent.mkdir(parents=True)
    out.write_bytes(b"good earlier output")


def test_download_verifies_and_caches(workspace, server):
    handler, url, archive = server
    dest = fetch(url, f"md5:{md5(archive)}", retries=1, timeout=10, progress=quiet)
    assert dest.read_bytes() == archive.read_bytes()
    cached = workspace / "keras_home" / "datasets" / "cifar-10-python.tar.gz"
    assert cached.read_bytes() == archive.read_bytes()
    assert handler.requests == 1
    fetch(url, f"md5:{md5(archive)}", retries=1, timeout=10, progress=quiet)
    assert handler.requests == 1  # second run served from the Keras cache


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_bad_transfer_is_retried_then_fails_leaving_nothing(workspace, server, mode, monkeypatch):
    handler, url, archive = server
    handler.mode = mode
    earlier_output(workspace)
    monkeypatch.setattr(download.time, "sleep", lambda s: None)
    with pytest.raises(PipelineError, match="download failed after 2 attempts"):
        fetch(url, f"md5:{md5(archive)}", retries=2, timeout=10, progress=quiet)
    assert handler.requests == 2
    cache = workspace / "keras_home" / "datasets"
    assert list(cache.iterdir()) == [], "a failed download is not kept"
    assert (workspace / "data/raw/dataset").read_bytes() == b"good earlier output"


def test_partial_file_in_cache_is_not_taken_as_good(workspace, server):
    handler, url, archive = server
    cache = workspace / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    (cache / "cifar-10-python.tar.gz").write_bytes(archive.read_bytes()[:1000])  # as a kill -9 mid-download leaves
    fetch(url, f"md5:{md5(archive)}", retries=1, timeout=10, progress=quiet)
    assert handler.requests == 1
    assert (cache / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()


def test_keras_cache_of_official_archive_is_used_without_network(workspace, monkeypatch):
    """The official URL with a Keras-cached copy: no download; the md5 is checked."""
    cache = workspace / "keras_home" / "datasets"
    cache.mkdir(parents=True)
    write_cifar_archive(cache / "cifar-10-batches-py-target_archive")
    monkeypatch.setattr(download, "OFFICIAL_MD5", md5(cache / "cifar-10-batches-py-target_archive"))
    monkeypatch.setattr(download, "download", lambda *a, **k: pytest.fail("must not download"))
    dest = fetch(download.OFFICIAL_URL, None, progress=quiet)
    assert md5(dest) == download.OFFICIAL_MD5


def test_wrong_checksum_names_file_and_both_digests(workspace, capsys):
    archive = workspace / "local.tar.gz"
    write_cifar_archive(archive)
    set_params(workspace, fetch={"source": str(archive), "checksum": "md5:" + "0" * 32})
    assert run_stage(main) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {archive}: md5 checksum mismatch: expected {'0' * 32}, got {md5(archive)}"


@pytest.mark.parametrize("as_url", [False, True])
def test_local_path_and_file_url(workspace, as_url):
    archive = workspace / "images.tar.gz"
    write_image_folder_archive(archive)
    source = archive.as_uri() if as_url else str(archive)
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = fetch(source, f"sha256:{sha}", progress=quiet)
    assert dest.read_bytes() == archive.read_bytes()


def test_directory_source_is_packed(workspace):
    archive = workspace / "images.tar"
    write_image_folder_archive(archive, train=10, test=10)
    folder = workspace / "images"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    dest = fetch(str(folder), None, progress=quiet)
    with tarfile.open(dest) as packed, tarfile.open(archive) as original:
        assert sorted(packed.getnames()) == sorted(m.name for m in original.getmembers() if m.isfile())


def test_missing_and_truncated_sources(workspace, capsys):
    set_params(workspace, fetch={"source": str(workspace / "nope.tar.gz")})
    assert run_stage(main) == 2
    assert "does not exist" in capsys.readouterr().err

    earlier_output(workspace)
    archive = workspace / "t.tar.gz"
    write_cifar_archive(archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    set_params(workspace, fetch={"source": str(archive)})
    assert run_stage(main) == 2
    assert f"{archive}: archive is truncated" in capsys.readouterr().err
    assert (workspace / "data/raw/dataset").read_bytes() == b"good earlier output"


def test_without_a_checksum_the_source_is_downloaded_afresh_each_time(workspace, server):
    handler, url, archive = server
    url = url.replace("cifar-10-python.tar.gz", "my-images.tar.gz")  # not the official name: no known md5
    for expected_requests in (1, 2):
        assert fetch(url, None, retries=1, timeout=10, progress=quiet).read_bytes() == archive.read_bytes()
        assert handler.requests == expected_requests


class _StallHandler(http.server.BaseHTTPRequestHandler):
    """Sends the headers and a few bytes, then nothing until released."""

    release = None

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        self.wfile.write(b"\x1f\x8b" * 10)
        self.wfile.flush()
        self.release.wait(30)

    def log_message(self, *args):
        pass


def test_a_stalled_download_times_out_after_fetch_timeout(workspace):
    handler = type("Stall", (_StallHandler,), {"release": threading.Event()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/my-images.tar.gz"
    try:
        with pytest.raises(PipelineError, match=r"download failed after 1 attempts: .*timed out"):
            fetch(url, None, retries=1, timeout=0.5, progress=quiet)
    finally:
        handler.release.set()
        httpd.shutdown()
        httpd.server_close()
