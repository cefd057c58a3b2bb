"""Decoding one image file to the network's input: 32x32 RGB uint8."""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar.core.errors import PipelineError

IMAGE_SIZE = 32


# Formats Pillow identifies but cannot decode by itself: stubs that need a handler of the
# application's (BUFR, GRIB, HDF5, WMF), EPS (it needs Ghostscript), MPEG and IPTC (identified only).
UNDECODABLE = {"BUFR", "GRIB", "HDF5", "WMF", "EPS", "MPEG", "IPTC"}


def _decodable_extensions():
    """The file extensions of every format Pillow decodes (it also registers save-only ones)."""
    Image.init()
    return frozenset(
        ext.lower()
        for ext, fmt in Image.registered_extensions().items()
        if fmt in Image.OPEN and fmt not in UNDECODABLE
    )


IMAGE_EXTENSIONS = _decodable_extensions()


def is_image_name(name):
    """True for a file name whose extension is one of an image format Pillow decodes, in any case."""
    dot = name.rfind(".")
    return dot > name.rfind("/") and name[dot:].lower() in IMAGE_EXTENSIONS


def decode_image(data, source):
    """Decode any image Pillow reads to a 32x32 RGB uint8 array."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            if rgb.size != (IMAGE_SIZE, IMAGE_SIZE):
                # Area averaging when shrinking (no aliasing), bilinear when enlarging.
                shrinking = rgb.size[0] > IMAGE_SIZE or rgb.size[1] > IMAGE_SIZE
                resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
                rgb = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), resample)
            return np.asarray(rgb, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise PipelineError(f"{source}: cannot decode image: {err}") from err
