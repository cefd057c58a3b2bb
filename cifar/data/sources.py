"""`fetch.source`: a path, to a download descriptor or to a dataset on disk.

A download descriptor (a .yaml file, e.g. data/sources/cifar-10-python.yaml) names a URL and its
checksum; a dataset is an archive or a directory. Either way `fetch.source` is a local path that
dvc.yaml declares as a dependency of fetch, so DVC tracks the descriptor's text, or the dataset's
content: rewriting either at the same path makes fetch stale.
"""

import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import yaml

from cifar.core.errors import PipelineError
from cifar.core.params import yaml_error_place
from cifar.data.download import fetch_url

DESCRIPTOR_SUFFIXES = (".yaml", ".yml")
CHECKSUM = re.compile(r"(md5):([0-9a-fA-F]{32})|(sha256):([0-9a-fA-F]{64})")
SCHEMES = ("https", "http", "file")


@dataclass(frozen=True)
class Descriptor:
    url: str
    checksum: tuple | None  # (algorithm, lowercase hex digest); None: downloaded afresh each time


def is_descriptor(path):
    return Path(path).suffix.lower() in DESCRIPTOR_SUFFIXES


def read_descriptor(path):
    """The URL and checksum of a descriptor file; PipelineError naming the file and the key on any problem."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise PipelineError(f"{path}: cannot read the download descriptor: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: not a readable download descriptor: YAML{yaml_error_place(err)}") from err
    if not isinstance(data, dict) or set(data) - {"url", "checksum"} or "url" not in data:
        raise PipelineError(f"{path}: a download descriptor holds `url` and `checksum` (null or md5:/sha256:<hex>)")
    url, checksum = data["url"], data.get("checksum")
    if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in SCHEMES:
        raise PipelineError(f"{path}: url {url!r} must be an https://, http:// or file:// URL")
    return Descriptor(url, parse_checksum(checksum, path))


def parse_checksum(text, where):
    if text is None:
        return None
    match = CHECKSUM.fullmatch(text) if isinstance(text, str) else None
    if not match:
        raise PipelineError(f"{where}: checksum {text!r} must be null, md5:<32 hex digits> or sha256:<64 hex digits>")
    algorithm, digest = (match[1], match[2]) if match[1] else (match[3], match[4])
    return algorithm, digest.lower()


def resolve(source, retries=3, timeout=60.0, progress=print, key="fetch.source"):
    """A local dataset (file or directory) for the param `key`, downloaded and verified if it is a descriptor."""
    path = Path(source)
    if not path.exists():
        raise PipelineError(f"{key}: {path} does not exist")
    if path.is_file() and is_descriptor(path):
        descriptor = read_descriptor(path)
        return fetch_url(descriptor.url, descriptor.checksum, retries, timeout, progress)
    return path
