"""Decoding one image file to the network's input: 32x32 RGB uint8."""

import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from cifar.core.errors import PipelineError

IMAGE_SIZE = 32


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
