"""Image files as people have them, each with the picture an image viewer shows for it (tests/test_photos.py).

Every file is generated here. Its expected 32x32 picture is rendered independently of
cifar/data/images.py: by hand with numpy (orientation, bit depth, alpha compositing, the sRGB
curve, CMYK), or through another decoder (pillow_heif's own API for HEIC). Where the format lets
us, the file itself is written by hand too (PNG chunks, PGM, EXIF), not by Pillow, the library
under test.
"""

import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import pillow_heif
from PIL import Image

WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Photo:
    name: str
    data: bytes
    picture: np.ndarray  # the 32x32 RGB uint8 a viewer shows, fitted as the Fitting says
    atol: int = 0  # how far a pixel may be: 0 wherever the rendering is exact
    why: str = ""  # where atol > 0: what rounds differently


def noise(height, width, channels=3, seed=0, low=0, high=256, dtype=np.uint8):
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(seed).integers(low, high, shape).astype(dtype)


def smooth(height, width):
    """Gradients: what lossy codecs (JPEG, HEIC) keep within a few levels."""
    rows, columns = np.mgrid[0:height, 0:width]
    return np.stack(
        [columns * 255 // (width - 1), rows * 255 // (height - 1), (rows + columns) * 127 // (height + width)], -1
    ).astype(np.uint8)


def gray3(gray):
    return np.repeat(gray[..., None], 3, axis=-1)


# --- files written by hand ---


def png(pixels, colour_type, bit_depth=8, chunks=()):
    """A PNG written with zlib and struct: `pixels` (height, width[, channels]), colour_type 0 gray,
    2 RGB, 3 palette, 4 gray+alpha, 6 RGBA; `chunks` [(type, body)] before the image data."""
    height, width = pixels.shape[:2]
    rows = pixels.astype(">u2" if bit_depth == 16 else np.uint8).reshape(height, -1)
    scanlines = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = b"".join(chunk(kind, content) for kind, content in chunks)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + body
        + chunk(b"IDAT", zlib.compress(scanlines))
        + chunk(b"IEND", b"")
    )


def exif_orientation(orientation):
    """EXIF's TIFF structure (little-endian) holding only the Orientation tag (0x0112, SHORT)."""
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1) + entry + struct.pack("<I", 0)


def pgm(values, maxval):
    """A binary PGM (P5): 16-bit big-endian samples where maxval > 255."""
    height, width = values.shape
    return f"P5\n{width} {height}\n{maxval}\n".encode() + values.astype(">u2" if maxval > 255 else np.uint8).tobytes()


def _s15fixed16(value):
    return struct.pack(">i", round(value * 65536))


def _xyz(x, y, z):
    return b"XYZ " + bytes(4) + _s15fixed16(x) + _s15fixed16(y) + _s15fixed16(z)


def _gamma_curve(gamma):
    return b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)


D50 = (0.9642, 1.0, 0.8249)  # the ICC's connection-space white
# sRGB's primaries adapted to D50, as sRGB profiles carry them
SRGB_COLORANTS = {
    b"rXYZ": (0.4361, 0.2225, 0.0139),
    b"gXYZ": (0.3851, 0.7169, 0.0971),
    b"bXYZ": (0.1431, 0.0606, 0.7141),
}


def icc_profile(colour_space, tags):
    """A minimal ICC v2 display profile: the 128-byte header, the tag table, the tags 4-byte aligned."""
    offset = 128 + 4 + 12 * len(tags)
    table = data = b""
    for signature, body in tags.items():
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    header = struct.pack(">I", offset + len(data)) + b"none" + bytes([2, 0x40, 0, 0]) + b"mntr" + colour_space + b"XYZ "
    header += bytes(12) + b"acsp" + bytes(24) + _s15fixed16(D50[0]) + _s15fixed16(D50[1]) + _s15fixed16(D50[2])
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + data


def linear_rgb_profile():
    """sRGB's primaries with a gamma of 1.0: the pixel values are linear light (a camera's raw export)."""
    curves = {name: _gamma_curve(1.0) for name in (b"rTRC", b"gTRC", b"bTRC")}
    return icc_profile(b"RGB ", {b"wtpt": _xyz(*D50), **{k: _xyz(*v) for k, v in SRGB_COLORANTS.items()}, **curves})


def linear_gray_profile():
    return icc_profile(b"GRAY", {b"wtpt": _xyz(*D50), b"kTRC": _gamma_curve(1.0)})


# --- renderings by hand ---


def srgb_encoded(linear):
    """The sRGB transfer function (IEC 61966-2-1) of linear values in 0..1, as 8-bit."""
    encoded = np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055)
    return np.rint(encoded * 255).astype(np.uint8)


def over(rgb, alpha, background=WHITE):
    """Alpha compositing (Porter-Duff `over`) of 8-bit colour and alpha onto an opaque colour."""
    a = alpha.astype(np.float64)[..., None] / 255
    return np.rint(rgb * a + np.asarray(background, np.float64) * (1 - a)).astype(np.uint8)


# EXIF orientation -> the displayed array from the stored one (EXIF 2.32, section 4.6.4, tag 0x0112).
ORIENTED = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],  # mirrored left-right
    3: lambda a: a[::-1, ::-1],  # rotated 180
    4: lambda a: a[::-1],  # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),  # mirrored along the top-left diagonal
    6: lambda a: np.rot90(a, -1),  # rotated 90 clockwise: a phone held upright
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # mirrored along the other diagonal
    8: lambda a: np.rot90(a, 1),  # rotated 90 anticlockwise
}


def reduced(picture, rows, columns):
    """Area averaging of rows x columns blocks (what a BOX filter does for a whole factor), rounded."""
    height, width = picture.shape[:2]
    blocks = picture.reshape(height // rows, rows, width // columns, columns, -1).astype(np.float64)
    return np.rint(blocks.mean(axis=(1, 3))).astype(np.uint8)


# --- the cases ---


def orientation_cases():
    stored = noise(32, 32, seed=1)
    cases = [
        Photo(f"orientation-{o}.png", png(stored, 2, chunks=[(b"eXIf", exif_orientation(o))]), ORIENTED[o](stored))
        for o in range(2, 9)
    ]
    # a phone photo: twice as wide as tall as stored, upright after rotating, then squashed to 32x32
    wide = noise(32, 64, seed=2)
    jpeg = io.BytesIO()
    Image.fromarray(smooth(32, 64)).save(jpeg, "JPEG", quality=95, exif=b"Exif\0\0" + exif_orientation(6))
    tiff = io.BytesIO()  # (Pillow 13 applies a TIFF's orientation as it loads one; this holds it there)
    Image.fromarray(wide).save(tiff, "TIFF", tiffinfo={0x0112: 8})
    return cases + [
        Photo("phone.jpg", jpeg.getvalue(), reduced(np.rot90(smooth(32, 64), -1), 2, 1), 6, "JPEG is lossy"),
        Photo(
            "scan.tif",
            tiff.getvalue(),
            reduced(np.rot90(wide, 1), 2, 1),
            1,
            "Pillow's BOX rounds its sums in fixed point",
        ),
    ]


def bit_depth_cases():
    gray16 = noise(32, 32, 1, seed=3, high=65536, dtype=np.uint16)
    rgb16 = noise(32, 32, 3, seed=4, high=65536, dtype=np.uint16)
    twelve_bit = noise(32, 32, 1, seed=5, high=4096, dtype=np.uint16)  # a microscope's or scanner's sensor
    floats = np.random.default_rng(6).random((32, 32), dtype=np.float32)
    tiff16, tiff_float = io.BytesIO(), io.BytesIO()
    Image.fromarray(gray16).save(tiff16, "TIFF")  # mode I;16
    Image.fromarray(floats).save(tiff_float, "TIFF")  # mode F: 0.0 black, 1.0 white
    to8 = lambda values, top: gray3(np.rint(values / top * 255).astype(np.uint8))  # noqa: E731
    return [
        Photo("gray16.png", png(gray16, 0, 16), to8(gray16, 65535)),
        Photo("rgb16.png", png(rgb16, 2, 16), np.rint(rgb16 / 257).astype(np.uint8), 1, "Pillow keeps the high byte"),
        Photo("gray16.pgm", pgm(gray16, 65535), to8(gray16, 65535)),
        Photo("gray12.pgm", pgm(twelve_bit, 4095), to8(twelve_bit, 4095)),
        Photo("gray16.tif", tiff16.getvalue(), to8(gray16, 65535)),
        Photo("float.tif", tiff_float.getvalue(), to8(floats.astype(np.float64), 1.0)),
    ]


def transparency_cases(background=WHITE, suffix=""):
    rgb, alpha = noise(32, 32, seed=7), noise(32, 32, 1, seed=8)
    gray = noise(32, 32, 1, seed=9)
    gray16 = noise(32, 32, 1, seed=10, high=65536, dtype=np.uint16)
    hole = gray16[5, 7]  # the one 16-bit value that tRNS makes see-through
    gray16_alpha = np.where(gray16 == hole, 0, 255)
    key = tuple(int(v) for v in rgb[0, 0])  # tRNS of an RGB PNG: one colour is see-through
    keyed_alpha = np.where((rgb == key).all(-1), 0, 255)
    palette = noise(4, 1, 3, seed=11)[:, 0]  # four colours, the third transparent
    indices = noise(32, 32, 1, seed=12, high=4)
    palette_alpha = np.where(indices == 2, 0, 255)
    plte = [(b"PLTE", palette.tobytes()), (b"tRNS", bytes([255, 255, 0, 255]))]
    gif = io.BytesIO()
    Image.fromarray(indices.astype(np.uint8), "P").save(gif, "GIF", palette=palette.tobytes(), transparency=2)
    return [
        Photo(f"rgba{suffix}.png", png(np.dstack([rgb, alpha]), 6), over(rgb, alpha, background)),
        Photo(f"gray-alpha{suffix}.png", png(np.dstack([gray, alpha]), 4), over(gray3(gray), alpha, background)),
        Photo(f"palette{suffix}.png", png(indices, 3, chunks=plte), over(palette[indices], palette_alpha, background)),
        Photo(f"palette{suffix}.gif", gif.getvalue(), over(palette[indices], palette_alpha, background)),
        Photo(
            f"keyed{suffix}.png",
            png(rgb, 2, chunks=[(b"tRNS", struct.pack(">HHH", *key))]),
            over(rgb, keyed_alpha, background),
        ),
        Photo(
            f"gray16-keyed{suffix}.png",
            png(gray16, 0, 16, chunks=[(b"tRNS", struct.pack(">H", hole))]),
            over(gray3(np.rint(gray16 / 65535 * 255).astype(np.uint8)), gray16_alpha, background),
        ),
    ]


def colour_cases():
    linear = noise(32, 32, seed=13)
    # LittleCMS's 8-bit gray transform is coarse in the deepest shadows (1-7 come out up to 7 levels
    # darker than the sRGB curve): gray values from 8 up.
    linear_gray = noise(32, 32, 1, seed=14, low=8)
    cmyk = noise(32, 32, 4, seed=15)
    cmyk_tiff = io.BytesIO()
    Image.fromarray(cmyk, "CMYK").save(cmyk_tiff, "TIFF")
    # CMYK without a profile: each ink subtracts from white, black from all three
    cmyk_rgb = np.rint((255 - cmyk[..., :3].astype(np.float64)) * (255 - cmyk[..., 3:].astype(np.float64)) / 255)
    return [
        Photo(
            "linear-light.png",
            png(linear, 2, chunks=[(b"iCCP", b"linear\0\0" + zlib.compress(linear_rgb_profile()))]),
            srgb_encoded(linear / 255),
            1,
            "LittleCMS interpolates the curves",
        ),
        Photo(
            "linear-gray.png",
            png(linear_gray, 0, chunks=[(b"iCCP", b"gray\0\0" + zlib.compress(linear_gray_profile()))]),
            gray3(srgb_encoded(linear_gray / 255)),
            1,
            "LittleCMS interpolates the curve",
        ),
        Photo("cmyk.tif", cmyk_tiff.getvalue(), cmyk_rgb.astype(np.uint8)),
    ]


def frame_cases():
    first, second = noise(32, 32, seed=16), noise(32, 32, seed=17)
    tiff, apng = io.BytesIO(), io.BytesIO()
    Image.fromarray(first).save(tiff, "TIFF", save_all=True, append_images=[Image.fromarray(second)])
    Image.fromarray(first).save(apng, "PNG", save_all=True, append_images=[Image.fromarray(second)])
    palette = noise(4, 1, 3, seed=18)[:, 0]
    frames = [noise(32, 32, 1, seed=s, high=4) for s in (19, 20)]
    gif = io.BytesIO()
    images = [Image.fromarray(f.astype(np.uint8), "P") for f in frames]
    for image in images:
        image.putpalette(palette.tobytes())
    images[0].save(gif, "GIF", save_all=True, append_images=images[1:], duration=100)
    return [
        Photo("pages.tif", tiff.getvalue(), first),
        Photo("animated.png", apng.getvalue(), first),
        Photo("animated.gif", gif.getvalue(), palette[frames[0]]),
    ]


def heic_cases():
    """iPhone photos, encoded by libheif; the expected picture from pillow_heif's own decoder (not Image.open)."""
    cases = []
    for name, source, exif, orient in (
        ("iphone.heic", smooth(32, 32), None, 1),
        ("iphone-upright.heic", smooth(32, 64), 6, 6),
    ):
        encoded = io.BytesIO()
        options = {"exif": b"Exif\0\0" + exif_orientation(exif)} if exif else {}
        Image.fromarray(source).save(encoded, "HEIF", quality=-1, **options)
        decoded = np.asarray(pillow_heif.open_heif(io.BytesIO(encoded.getvalue())))  # rotated by libheif
        upright = ORIENTED[orient](source)
        assert decoded.shape == upright.shape and np.abs(decoded.astype(int) - upright).max() <= 8, "libheif's decode"
        picture = reduced(decoded, 2, 1) if decoded.shape[0] == 64 else decoded
        cases.append(Photo(name, encoded.getvalue(), picture, 1 if orient != 1 else 0, "BOX's fixed point"))
    return cases


def combination_cases():
    """Files that carry two or more of the properties above together, as real ones do (a phone's photo is
    oriented and profiled; a logo exported with a profile keeps its alpha): each rendered by composing the
    renderings by hand, in a viewer's order: orientation, then the colour profile, then alpha over the page."""
    rgb, alpha = noise(32, 32, seed=22), noise(32, 32, 1, seed=23)
    gray = noise(32, 32, 1, seed=24, low=8)  # LittleCMS's coarse gray shadows, as in colour_cases
    rgb16 = noise(32, 32, 3, seed=25, high=65536, dtype=np.uint16)
    alpha16 = noise(32, 32, 1, seed=26, high=65536, dtype=np.uint16)
    gray16 = noise(32, 32, 1, seed=27, high=65536, dtype=np.uint16)
    palette = noise(4, 1, 3, seed=28)[:, 0]
    indices = noise(32, 32, 1, seed=29, high=4)
    palette_alpha = np.where(indices == 1, 0, 255)
    linear_rgb = [(b"iCCP", b"linear\0\0" + zlib.compress(linear_rgb_profile()))]
    linear_gray = [(b"iCCP", b"gray\0\0" + zlib.compress(linear_gray_profile()))]
    plte = [(b"PLTE", palette.tobytes()), (b"tRNS", bytes([255, 0, 255, 255]))]
    to8 = lambda values: np.rint(values / 65535 * 255)  # noqa: E731  16-bit samples as 8-bit levels
    first, second = noise(32, 32, 4, seed=30), noise(32, 32, 4, seed=31)
    apng = io.BytesIO()
    Image.fromarray(first, "RGBA").save(apng, "PNG", save_all=True, append_images=[Image.fromarray(second, "RGBA")])
    profiled_jpeg = io.BytesIO()  # a phone photo: EXIF orientation and an ICC profile, both in the JPEG
    Image.fromarray(smooth(32, 32)).save(
        profiled_jpeg, "JPEG", quality=95, exif=b"Exif\0\0" + exif_orientation(6), icc_profile=linear_rgb_profile()
    )
    # its stored pixels as decoded (Image.open applies neither orientation nor profile): JPEG's loss is not
    # what is under test here, and near black the linear profile's curve would stretch it 13 times
    stored_jpeg = np.asarray(Image.open(io.BytesIO(profiled_jpeg.getvalue())).convert("RGB"))
    return [
        Photo(
            "oriented-alpha.png",
            png(np.dstack([rgb, alpha]), 6, chunks=[(b"eXIf", exif_orientation(6))]),
            ORIENTED[6](over(rgb, alpha)),
        ),
        Photo(
            "oriented-profiled.png",
            png(rgb, 2, chunks=[(b"eXIf", exif_orientation(8)), *linear_rgb]),
            ORIENTED[8](srgb_encoded(rgb / 255)),
            1,
            "LittleCMS interpolates the curves",
        ),
        Photo(
            "oriented-profiled.jpg",
            profiled_jpeg.getvalue(),
            ORIENTED[6](srgb_encoded(stored_jpeg / 255)),
            1,
            "LittleCMS interpolates the curves",
        ),
        Photo(
            "profiled-alpha.png",
            png(np.dstack([rgb, alpha]), 6, chunks=linear_rgb),
            over(srgb_encoded(rgb / 255), alpha),
            1,
            "LittleCMS interpolates the curves",
        ),
        Photo(
            "profiled-gray-alpha.png",
            png(np.dstack([gray, alpha]), 4, chunks=linear_gray),
            over(gray3(srgb_encoded(gray / 255)), alpha),
            1,
            "LittleCMS interpolates the curve",
        ),
        Photo(
            "rgba16.png",
            png(np.dstack([rgb16, alpha16]), 6, 16),
            over(to8(rgb16), to8(alpha16)),
            2,
            "Pillow keeps the high bytes of colour and alpha",
        ),
        Photo(
            "oriented-gray16.png",
            png(gray16, 0, 16, chunks=[(b"eXIf", exif_orientation(3))]),
            ORIENTED[3](gray3(to8(gray16).astype(np.uint8))),
        ),
        Photo(
            "profiled-gray16.png",  # 16-bit samples of the 8-bit levels of `gray` (v * 257), in linear light
            png(gray.astype(np.uint16) * 257, 0, 16, chunks=linear_gray),
            gray3(srgb_encoded(gray / 255)),
            1,
            "LittleCMS interpolates the curve",
        ),
        Photo(
            "oriented-palette.png",
            png(indices, 3, chunks=[(b"eXIf", exif_orientation(5)), *plte]),
            ORIENTED[5](over(palette[indices], palette_alpha)),
        ),
        Photo("animated-alpha.png", apng.getvalue(), over(first[..., :3], first[..., 3])),
    ]


def default_cases():
    """Every kind of file, for the default fitting (squash, white)."""
    return (
        orientation_cases()
        + bit_depth_cases()
        + transparency_cases()
        + colour_cases()
        + frame_cases()
        + heic_cases()
        + combination_cases()
    )


def aspect_cases(background=(51, 102, 153)):
    """A 64x32 picture, and a 32x64 one, by each aspect: the expected arrays computed by hand."""
    cases = {}
    for name, shape in (("wide", (32, 64)), ("tall", (64, 32))):
        source = noise(*shape, seed=21)
        long_axis = 1 if shape[1] == 64 else 0
        middle = [slice(None), slice(None)]
        middle[long_axis] = slice(16, 48)
        padded = np.empty((32, 32, 3), np.uint8)
        padded[:] = background
        inner = [slice(None), slice(None)]
        inner[1 - long_axis] = slice(8, 24)
        padded[tuple(inner)] = reduced(source, 2, 2)
        data = png(source, 2)
        cases[name] = {
            "squash": Photo(f"{name}.png", data, reduced(source, 2 - long_axis, 1 + long_axis), 1, "BOX's fixed point"),
            "crop": Photo(f"{name}.png", data, source[tuple(middle)]),
            "pad": Photo(f"{name}.png", data, padded, 1, "BOX's fixed point"),
        }
    return cases
