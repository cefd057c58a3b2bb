"""Decoding one image file to the network's input, 32x32 RGB uint8, as an image viewer shows the file.

The one decode path of preprocess (image folders), `predict` and the exports' predict path. Before
resizing, the picture a person sees is rebuilt from what the file carries:

- orientation: the EXIF (or TIFF) Orientation tag is applied, as phones' photos need;
- several frames (GIF, APNG, multi-page TIFF, MPO): the first, the one a still viewer shows;
- bit depth: 16-bit and 32-bit integer images are read on 0-65535 (65535 white; Pillow reads 16-bit
  RGB as 8-bit itself), floating-point ones on 0.0-1.0, both rounded to 8 bits;
- colour: an embedded ICC profile is converted to sRGB (LittleCMS, perceptual intent); without one,
  RGB is taken as sRGB and CMYK, YCbCr, LAB and HSV are converted by Pillow;
- transparency (an alpha channel, a palette's or a colour's tRNS): composited over `background`,
  white by default, as browsers show a transparent picture on a page and editors flatten one;
- HEIC/HEIF (iPhone photos): decoded by pillow-heif, which applies the file's rotation itself.

Then the picture is fitted to 32x32 (`aspect`): squashed (Keras's `load_img`, the default), centre-
cropped to a square, or padded with `background` to one. Refused, with one line naming the file: what
Pillow cannot decode, truncated files, and pictures over Pillow's decompression-bomb limit
(2 x Image.MAX_IMAGE_PIXELS, 179 megapixels), checked from the header before any pixel is decoded.
"""

import io
import warnings
from dataclasses import dataclass
from functools import cache

import numpy as np
import pillow_heif
from PIL import Image, ImageCms, ImageColor, ImageOps, UnidentifiedImageError

from cifar.core.errors import PipelineError

IMAGE_SIZE = 32

pillow_heif.register_heif_opener()
# Between Pillow's limit and twice it, Pillow only warns: a 100-megapixel phone photo is no attack.
# Over twice it, Image.open raises DecompressionBombError, which decode_image reports.
warnings.simplefilter("ignore", Image.DecompressionBombWarning)

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


@dataclass(frozen=True)
class Fitting:
    """How a picture becomes the 32x32 input: params.yaml's preprocess.aspect and preprocess.background."""

    aspect: str = "squash"
    background: str = "white"  # any colour Pillow's ImageColor reads: a name, #rrggbb, rgb(r, g, b)

    @property
    def background_rgb(self):
        return ImageColor.getrgb(self.background)[:3]


DEFAULT_FITTING = Fitting()  # params.yaml's defaults, and what every model before input.json was trained on


def decode_image(data, source, fitting=DEFAULT_FITTING):
    """The 32x32 RGB uint8 array of an image file's bytes; PipelineError naming `source` if it cannot be."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format == "JPEG":
                # Decode at the smallest DCT scale (1/2, 1/4, 1/8) still 8x the input: a 50-megapixel
                # photo decodes faster (3x at 12 megapixels), and area-averaging the rest gives the same 32x32
                # within 3 levels of 255 (tests/test_photos.py).
                image.draft(None, (8 * IMAGE_SIZE, 8 * IMAGE_SIZE))
            image.load()
            picture = viewed(image, fitting.background_rgb)
    except Image.DecompressionBombError as err:
        raise PipelineError(
            f"{source}: refused: over Pillow's decompression-bomb limit "
            f"of {2 * Image.MAX_IMAGE_PIXELS:,} pixels ({err})"
        ) from err
    except UnidentifiedImageError as err:
        raise PipelineError(f"{source}: cannot decode image: not in a format Pillow reads") from err
    except (OSError, ValueError, SyntaxError, ImageCms.PyCMSError) as err:
        if "truncated" in str(err).lower():  # Pillow words it per format: "Truncated File Read", ...
            raise PipelineError(f"{source}: cannot decode image: the file is truncated ({err})") from err
        raise PipelineError(f"{source}: cannot decode image: {err}") from err
    return np.asarray(fitted(picture, fitting), dtype=np.uint8)


def viewed(image, background):
    """The RGB picture an image viewer shows for a loaded (first) frame: oriented, sRGB, 8-bit, opaque."""
    ImageOps.exif_transpose(image, in_place=True)
    image = eight_bit(image)
    alpha = None
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")  # a palette's or a colour's tRNS becomes alpha here
        alpha = rgba.getchannel("A")
        image = rgba.convert("L") if image.mode in ("L", "LA", "La") else rgba.convert("RGB")
    elif image.mode == "P":
        image = image.convert("RGB")
    image = to_srgb(image)
    if alpha is not None:
        image = Image.composite(image, Image.new("RGB", image.size, background), alpha)
    return image


def eight_bit(image):
    """8-bit modes unchanged; 16/32-bit integers scaled from 0-65535, floats from 0.0-1.0, rounded to L
    (LA where a transparent value is set), keeping the ICC profile."""
    if image.mode.startswith("I"):
        scale = 65535
    elif image.mode == "F":
        scale = 1.0
    else:
        return image
    values = np.asarray(image, dtype=np.float64)
    gray = Image.fromarray(np.rint(np.clip(values / scale, 0, 1) * 255).astype(np.uint8), "L")
    if "transparency" in image.info:  # a 16-bit PNG's tRNS: the one value that is see-through
        opaque = Image.fromarray(np.where(values == image.info["transparency"], 0, 255).astype(np.uint8), "L")
        gray = Image.merge("LA", (gray, opaque))
    if "icc_profile" in image.info:
        gray.info["icc_profile"] = image.info["icc_profile"]
    return gray


@cache
def _srgb():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


# The ICC colour spaces of the modes a profile can be applied to.
_PROFILE_SPACES = {"RGB": "RGB ", "L": "GRAY", "CMYK": "CMYK", "LAB": "Lab "}


def to_srgb(image):
    """RGB in sRGB: through the embedded ICC profile where it fits the mode, else Pillow's conversion."""
    icc = image.info.get("icc_profile")
    if icc and image.mode in _PROFILE_SPACES:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        except (ImageCms.PyCMSError, OSError, ValueError):
            profile = None  # a damaged profile: viewers ignore it, and so do we
        if profile is not None and profile.profile.xcolor_space == _PROFILE_SPACES[image.mode]:
            return ImageCms.profileToProfile(image, profile, _srgb(), outputMode="RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def fitted(picture, fitting):
    """The picture at 32x32 by fitting.aspect: area averaging where it shrinks, bilinear where it grows."""
    size = (IMAGE_SIZE, IMAGE_SIZE)
    if fitting.aspect == "squash" and picture.size == size:
        return picture
    scaled_from = min(picture.size) if fitting.aspect == "crop" else max(picture.size)  # the side that becomes 32
    method = Image.Resampling.BOX if scaled_from > IMAGE_SIZE else Image.Resampling.BILINEAR
    if fitting.aspect == "crop":
        return ImageOps.fit(picture, size, method)
    if fitting.aspect == "pad":
        return ImageOps.pad(picture, size, method, color=fitting.background_rgb)
    return picture.resize(size, method)
