"""Verified downloads: a URL and its checksum to a local file, through the Keras cache.

Downloads go through `keras.utils.get_file`, which shows a progress bar. A transfer cut short
(fewer bytes than the server announced, a dropped connection, a timeout) is retried; a complete
file whose checksum does not match is not (the server holds other bytes than the descriptor
names: downloading them again gives the same), and is not kept. A file is only kept once its
checksum matches, so an interrupted or corrupted transfer is never mistaken for a good file.
"""

import hashlib
import os
import socket
import time
import urllib.parse
from pathlib import Path

from cifar.core.errors import PipelineError

# Names under which keras.datasets.cifar10 (Keras 3 and Keras 2) caches the official archive;
# a copy whose checksum matches is used instead of downloading.
KERAS_CACHE_NAMES = ("cifar-10-batches-py-target_archive", "cifar-10-batches-py.tar.gz", "cifar-10-python.tar.gz")


def keras_cache_dir():
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"


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


def url_path(url):
    """The local file a file:// URL names, or None for a remote URL."""
    parts = urllib.parse.urlsplit(url)
    return Path(urllib.parse.unquote(parts.path)) if parts.scheme == "file" else None


def fetch_url(url, checksum, retries=3, timeout=60.0, progress=print):
    """A local, verified file with the content of `url`: the file itself (file://), a cached copy, or a download."""
    path = url_path(url)
    if path is not None:
        if not path.is_file():
            raise PipelineError(f"{url}: no such file")
        verify(path, checksum)
        return path
    if checksum is not None:
        name = Path(urllib.parse.urlsplit(url).path).name
        for cached in dict.fromkeys(keras_cache_dir() / n for n in (name, *KERAS_CACHE_NAMES)):
            if cached.is_file() and matches(cached, checksum):
                progress(f"using cached {cached}")
                return cached
    return download(url, checksum, retries, timeout, progress)


def download(url, checksum, retries, timeout, progress=print):
    """Download into the Keras cache, retrying transfers cut short; only a verified file is kept.

    Without a checksum the file cannot be told apart from a partial one, so it
    is downloaded afresh every time.
    """
    import keras  # deferred: importing TensorFlow costs seconds and is needed only here

    name = Path(urllib.parse.urlsplit(url).path).name or "dataset.tar.gz"
    # get_file falls back to /tmp/.keras when the cache directory does not exist yet.
    keras_cache_dir().mkdir(parents=True, exist_ok=True)
    previous_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # urlretrieve has none: a stalled server would hang forever
    try:
        for attempt in range(1, retries + 1):
            try:
                # No file_hash: get_file would raise the same ValueError for a short file and a wrong one.
                # A transfer cut short raises here (urlretrieve checks the announced length).
                path = keras.utils.get_file(
                    fname=name,
                    origin=url,
                    cache_dir=str(keras_cache_dir().parent),
                    cache_subdir="datasets",
                    force_download=True,  # fetch_url looked for a good cached copy first
                )
            except Exception as err:  # get_file raises bare Exception for network failures
                _discard(keras_cache_dir() / name)
                last_error = f"{url}: {err}"
            else:
                if checksum is None:
                    return Path(path)
                algorithm, expected = checksum
                actual = file_digest(path, algorithm)
                if actual == expected:
                    return Path(path)
                _discard(path)  # the Keras cache keeps no bad copy
                raise PipelineError(
                    f"{url}: downloaded whole, but its {algorithm} is {actual}, not the expected {expected}; "
                    "not retried, as the server would send the same bytes (check the checksum in its descriptor)"
                )
            if attempt < retries:
                wait = min(2 ** (attempt - 1), 10)
                progress(f"download failed ({last_error}); retry {attempt}/{retries - 1} in {wait}s")
                time.sleep(wait)
    finally:
        socket.setdefaulttimeout(previous_timeout)
    raise PipelineError(f"download failed after {retries} attempts: {last_error}")


def _discard(path):
    Path(path).unlink(missing_ok=True)
