"""Load the pickled batches of the official CIFAR-10 and CIFAR-100 Python archives without executing code.

A pickle can call any importable function; the batches only need numpy's
array reconstruction, so every other global is refused.
"""

import io
import pickle

import numpy as np

from cifar.core.errors import PipelineError


def _latin1_encode(text, encoding="latin1"):
    """Python 3's protocol-2 pickles store bytes as _codecs.encode(text, 'latin1'); allow only that."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("_codecs", "encode"): _latin1_encode,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}

IMAGE_SIZE = 32  # the format's: every CIFAR image is 32x32x3
PIXELS = IMAGE_SIZE * IMAGE_SIZE * 3


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load global {module}.{name}") from None


def safe_unpickle(data, source):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as err:  # any failure of an untrusted pickle is a bad file, not a bug
        raise PipelineError(f"{source}: not a valid CIFAR pickle: {err}") from err


def _get(batch, key, source):
    if not isinstance(batch, dict):
        raise PipelineError(f"{source}: expected a pickled dict, got {type(batch).__name__}")
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise PipelineError(f"{source}: missing key {key!r}")


def parse_batch(data, source, num_classes=10, label_key="labels"):
    """(images uint8 [N,32,32,3], labels int64 [N]) of one pickled batch; CIFAR-100's label_key is
    'fine_labels' or 'coarse_labels'."""
    batch = safe_unpickle(data, source)
    pixels = _get(batch, "data", source)
    labels = _get(batch, label_key, source)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 or pixels.shape[1] != PIXELS:
        shape = getattr(pixels, "shape", None)
        dtype = getattr(pixels, "dtype", type(pixels).__name__)
        raise PipelineError(f"{source}: 'data' must be a uint8 array of shape (N, {PIXELS}); got {shape} {dtype}")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise PipelineError(f"{source}: {label_key!r} must be a list of integers") from err
    if labels.shape != (pixels.shape[0],):
        raise PipelineError(f"{source}: {labels.shape[0] if labels.ndim else 0} labels for {pixels.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise PipelineError(f"{source}: labels must be in 0..{num_classes - 1}; found {labels.min()}..{labels.max()}")
    images = pixels.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def parse_meta(data, source, key="label_names"):
    """The class names of a meta pickle: CIFAR-10's batches.meta ('label_names'), or CIFAR-100's meta
    ('fine_label_names' or 'coarse_label_names')."""
    meta = safe_unpickle(data, source)
    names = _get(meta, key, source)
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise PipelineError(f"{source}: {key!r} must be a non-empty list of strings")
    return [n.decode() if isinstance(n, bytes) else n for n in names]
