"""Common corruptions of images, at five severities, generated deterministically from the test set.

CIFAR-10-C's (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations"), whose corrupted sets cannot be downloaded here: six of its fifteen
corruptions, each computed as its make_cifar_c.py computes it (tests/test_corruptions.py compares
them with a transcription of that file, at every severity). Each takes uint8 images (N, 32, 32, 3)
and one severity's values; params.yaml's `robustness` section gives the five of each, by default
CIFAR-10-C's:
  gaussian_noise   sigma of additive noise on [0, 1] pixels       .04 .06 .08 .09 .10
  defocus_blur     radius (pixels) of a disk kernel                .3  .4  .5  1   1.5
                   and the sigma that antialiases the disk          .4  .5  .6  .2  .1
  contrast         factor pulling each channel towards its mean    .75 .5  .4  .3  .15
  brightness       added to the HSV value channel (on [0, 1])       .05 .1  .15 .2  .3
  jpeg_compression JPEG quality                                    80  65  58  50  40
  pixelate         side of the downsampled image, as a fraction    .95 .9  .85 .75 .65
Like make_cifar_c.py, results are truncated to uint8 (`np.uint8` of [0, 255] floats), not rounded.
The one difference: the noise comes from numpy's seeded Generator (the same seed, corruption and
severity give the same noise), theirs from numpy's unseeded global one; the distribution is the same.
"""

import io

import numpy as np
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv
from PIL import Image
from scipy import ndimage

CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast", "brightness", "jpeg_compression", "pixelate")
# make_cifar_c.py's disk lives on a 17 x 17 grid (radii up to 8) and is antialiased by a 3 x 3 Gaussian.
DISK_REACH = 8


def gaussian_noise(images, sigma, rng):
    noisy = images / 255.0 + rng.normal(scale=sigma, size=images.shape)
    return to_uint8(noisy)


def disk_kernel(radius, alias_sigma):
    """make_cifar_c.py's `disk`: a float32 disk of `radius` summing to 1, then blurred by cv2.GaussianBlur
    with a 3 x 3 kernel of sigma `alias_sigma` (separable taps exp(-x^2 / 2 sigma^2), x in -1, 0, 1)."""
    grid = np.arange(-DISK_REACH, DISK_REACH + 1)
    x, y = np.meshgrid(grid, grid)
    disk = (x**2 + y**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    taps = np.exp(-(np.arange(-1, 2) ** 2) / (2 * alias_sigma**2))
    taps = (taps / taps.sum()).astype(np.float32)
    # The disk ends at least 6 pixels inside the grid, so the border mode does not matter here.
    disk = ndimage.correlate1d(disk, taps, axis=0, mode="constant")
    return ndimage.correlate1d(disk, taps, axis=1, mode="constant")


def defocus_blur(images, radius, alias_sigma, rng=None):
    kernel = disk_kernel(radius, alias_sigma)[None, :, :, None]  # the same disk for every image and channel
    # cv2.filter2D's default border, BORDER_REFLECT_101 (the edge pixel not repeated), is scipy's "mirror".
    blurred = ndimage.correlate(images / 255.0, kernel, mode="mirror")
    return to_uint8(blurred)


def contrast(images, factor, rng=None):
    x = images / 255.0
    means = x.mean(axis=(1, 2), keepdims=True)  # per image and channel, as make_cifar_c.py
    return to_uint8((x - means) * factor + means)


def brightness(images, amount, rng=None):
    """HSV value + amount (clipped to 1). make_cifar_c.py uses skimage's rgb2hsv/hsv2rgb; matplotlib's
    are the same arithmetic (tested equal to it)."""
    hsv = rgb_to_hsv(images / 255.0)
    hsv[..., 2] = np.clip(hsv[..., 2] + amount, 0, 1)
    return to_uint8(hsv_to_rgb(hsv))


def jpeg_compression(images, quality, rng=None):
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out


def pixelate(images, fraction, rng=None):
    height, width = images.shape[1:3]
    small = (max(1, int(width * fraction)), max(1, int(height * fraction)))  # truncated, as make_cifar_c.py
    out = np.empty_like(images)
    for i, image in enumerate(images):
        reduced = Image.fromarray(image).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(reduced.resize((width, height), Image.Resampling.BOX))
    return out


FUNCTIONS = {name: globals()[name] for name in CORRUPTIONS}


def to_uint8(x):
    """make_cifar_c.py's `np.uint8(np.clip(x, 0, 1) * 255)`: truncated."""
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def severity_parameters(settings, name):
    """The values of corruption `name` at severities 1..5, as tuples of its function's arguments."""
    if name == "defocus_blur":
        return list(zip(settings["defocus_blur"], settings["defocus_blur_smoothing"]))
    return [(value,) for value in settings[name]]


def corrupt(images, name, parameters, seed, severity):
    """`images` with corruption `name` at `parameters` (one value or a tuple of them); the same
    (seed, name, severity) give the same noise."""
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    arguments = parameters if isinstance(parameters, tuple) else (parameters,)
    return FUNCTIONS[name](images, *arguments, rng=rng)
