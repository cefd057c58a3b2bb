"""CIFAR-10-C's own corruption code, transcribed for tests to compare cifar/robustness/corruptions.py with.

From hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py (commit 8190fe3), the six corruptions the
robustness stage uses, line for line. Two edits, marked below: the severity's values are arguments
(the original indexes its own table by `severity`, the same values as params.yaml's defaults), and
gaussian_noise draws from an `rng` argument instead of numpy's global generator. The original turns
each result into the stored image with `np.uint8(corruption(convert_img(img)))`, where `convert_img`
(ToTensor then ToPILImage) gives back the uint8 image unchanged: `cifar_c_image` does the same.
Needs OpenCV and scikit-image, as the original does (the `test` extra installs both).
"""

from io import BytesIO

import cv2
import numpy as np
import skimage as sk
from PIL import Image as PILImage

# The original's tables, severity 1..5.
SEVERITIES = {
    "gaussian_noise": [0.04, 0.06, 0.08, 0.09, 0.10],
    "defocus_blur": [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)],
    "contrast": [0.75, 0.5, 0.4, 0.3, 0.15],
    "brightness": [0.05, 0.1, 0.15, 0.2, 0.3],
    "jpeg_compression": [80, 65, 58, 50, 40],
    "pixelate": [0.95, 0.9, 0.85, 0.75, 0.65],
}


def disk(radius, alias_blur=0.1, dtype=np.float32):
    if radius <= 8:
        L = np.arange(-8, 8 + 1)
        ksize = (3, 3)
    else:
        L = np.arange(-radius, radius + 1)
        ksize = (5, 5)
    X, Y = np.meshgrid(L, L)
    aliased_disk = np.array(radius**2 >= (X**2 + Y**2), dtype=dtype)
    aliased_disk /= np.sum(aliased_disk)

    # supersample disk to antialias
    return cv2.GaussianBlur(aliased_disk, ksize=ksize, sigmaX=alias_blur)


def gaussian_noise(x, c, rng):  # edit: c and rng are arguments
    x = np.array(x) / 255.0
    return np.clip(x + rng.normal(size=x.shape, scale=c), 0, 1) * 255


def defocus_blur(x, c):  # edit: c = (radius, alias_blur) is an argument
    x = np.array(x) / 255.0
    kernel = disk(radius=c[0], alias_blur=c[1])

    channels = []
    for d in range(3):
        channels.append(cv2.filter2D(x[:, :, d], -1, kernel))
    channels = np.array(channels).transpose((1, 2, 0))  # 3x32x32 -> 32x32x3

    return np.clip(channels, 0, 1) * 255


def contrast(x, c):  # edit: c is an argument
    x = np.array(x) / 255.0
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1) * 255


def brightness(x, c):  # edit: c is an argument
    x = np.array(x) / 255.0
    x = sk.color.rgb2hsv(x)
    x[:, :, 2] = np.clip(x[:, :, 2] + c, 0, 1)
    x = sk.color.hsv2rgb(x)

    return np.clip(x, 0, 1) * 255


def jpeg_compression(x, c):  # edit: c is an argument
    output = BytesIO()
    x.save(output, "JPEG", quality=c)
    x = PILImage.open(output)

    return x


def pixelate(x, c):  # edit: c is an argument
    x = x.resize((int(32 * c), int(32 * c)), PILImage.BOX)
    x = x.resize((32, 32), PILImage.BOX)

    return x


FUNCTIONS = {
    "gaussian_noise": gaussian_noise,
    "defocus_blur": defocus_blur,
    "contrast": contrast,
    "brightness": brightness,
    "jpeg_compression": jpeg_compression,
    "pixelate": pixelate,
}


def cifar_c_image(image, name, c, rng=None):
    """One uint8 (32, 32, 3) image corrupted as make_cifar_c.py stores it."""
    extra = (rng,) if name == "gaussian_noise" else ()
    return np.uint8(FUNCTIONS[name](PILImage.fromarray(image), c, *extra))
