"""Resolve `fetch.source` to a verified local file: Keras cache, local path, or download.

Downloads go through `keras.utils.get_file`, which shows a progress bar, and are
retried; a download is only kept once its checksum matches, so an interrupted
or corrupted transfer is never mistaken for a good file.
"""

import hashlib
import os
import socket
import time
import urllib.parse
from pathlib import Path

from stages.errors import PipelineError

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
# Names under which keras.datasets.cifar10 (Keras 3 and Keras 2) caches the archive.
KERAS_CACHE_NAMES = ("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz", "cifar-10-python.tar.gz")


def keras_cache_dir():
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


def parse_checksum(checksum, source):
    """Return (algorithm, hexdigest) or None; the official archive defaults to its md5."""
    if checksum is None:
        if is_official(source):
            return "md5", OFFICIAL_MD5
        return None
    algorithm, digest = checksum.split(":", 1)
    return algorithm, digest.lower()


def is_official(source):
    return source == OFFICIAL_URL or Path(urllib.parse.urlsplit(source).path).name == "cifar-10-python.tar.gz"


def file_digest(path, algorithm):
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def verify(path, checksum):
    """Raise PipelineError naming the file and both digests when `path` does not match."""
    if checksum is None:
        return
    algorithm, expected = checksum
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise PipelineError(f"{path}: {algorithm} checksum mismatch: expected {expected}, got {actual}")


def matches(path, checksum):
    try:
        verify(path, checksum)
    except PipelineError:
        return False
    return True


def local_path(source):
    """The local path a source names, or None when it is a remote URL."""
    scheme = urllib.parse.urlsplit(source).scheme
    if scheme == "file":
        return Path(urllib.parse.unquote(urllib.parse.urlsplit(source).path))
    if scheme in ("http", "https", "ftp"):
        return None
    return Path(source).expanduser()


def resolve_source(source, checksum, retries=3, timeout=60.0, progress=print):
    """Return a local, verified path for `source` (a file or a directory)."""
    path = local_path(source)
    if path is not None:
        if not path.exists():
            raise PipelineError(f"fetch.source: {path} does not exist")
        if path.is_file():
            verify(path, checksum)
        elif checksum is not None:
            raise PipelineError(f"fetch.checksum: {path} is a directory; a checksum applies to archive files only")
        return path
    if checksum is not None:
        for name in KERAS_CACHE_NAMES:
            cached = keras_cache_dir() / name
            if cached.is_file() and matches(cached, checksum):
                progress(f"using cached {cached}")
                return cached
    return download(source, checksum, retries, timeout, progress)


def download(url, checksum, retries, timeout, progress=print):
    """Download into the Keras cache with retries; only a verified file is kept.

    Without a checksum the file cannot be told apart from a partial one, so it
    is downloaded afresh every time.
    """
    import keras  # deferred: importing TensorFlow costs seconds and is needed only here

    name = Path(urllib.parse.urlsplit(url).path).name or "dataset.tar.gz"
    algorithm, digest = checksum if checksum else ("sha256", None)
    # get_file falls back to /tmp/.keras when the cache directory does not exist yet.
    keras_cache_dir().mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # urlretrieve has none: a stalled server would hang forever
    try:
        for attempt in range(1, retries + 1):
            try:
                path = keras.utils.get_file(
                    fname=name,
                    origin=url,
                    file_hash=digest,
                    hash_algorithm=algorithm,
                    cache_dir=str(keras_cache_dir().parent),
                    cache_subdir="datasets",
                    force_download=digest is None,
                )
                verify(path, checksum)
                return Path(path)
            except PipelineError as err:
                _discard(keras_cache_dir() / name)
                last_error = str(err)
            except Exception as err:  # get_file raises bare Exception/ValueError for network and hash failures
                _discard(keras_cache_dir() / name)
                last_error = f"{url}: {err}"
            if attempt < retries:
                wait = min(2 ** (attempt - 1), 10)
                progress(f"download failed ({last_error}); retry {attempt}/{retries - 1} in {wait}s")
                time.sleep(wait)
    finally:
        socket.setdefaulttimeout(previous_timeout)
    raise PipelineError(f"download failed after {retries} attempts: {last_error}")


def _discard(path):
    Path(path).unlink(missing_ok=True)
