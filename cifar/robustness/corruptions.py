"""Common corruptions of images, at five severities, generated deterministically from the test set.

After CIFAR-10-C (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations"), whose corrupted sets cannot be downloaded here. Each corruption
takes uint8 images (N, 32, 32, 3) and one severity parameter; params.yaml's `robustness` section
gives the five values of each, by default CIFAR-10-C's:
  gaussian_noise   sigma of additive noise on [0, 1] pixels      .04 .06 .08 .09 .10
  defocus_blur     radius (pixels) of a disk kernel               .3  .4  .5  1   1.5
                   (CIFAR-10-C also smooths the disk, by sigma .4 .5 .6 .2 .1: fixed at .5 here)
  contrast         factor pulling pixels towards the image mean   .75 .5  .4  .3  .15
  brightness       added to the HSV value channel (on [0, 1])      .05 .1  .15 .2  .3
  jpeg_compression JPEG quality                                   80  65  58  50  40
  pixelate         side of the downsampled image, as a fraction   .95 .9  .85 .75 .65
"""

import io

import numpy as np
from PIL import Image
from scipy import ndimage

CORRUPTIONS = ("gaussian_noise", "defocus_blur", "contrast", "brightness", "jpeg_compression", "pixelate")
ALIAS_SIGMA = 0.5


def gaussian_noise(images, sigma, rng):
    noisy = images / 255.0 + rng.normal(scale=sigma, size=images.shape)
    return to_uint8(noisy)


def disk_kernel(radius, alias_sigma=ALIAS_SIGMA):
    """A disk of `radius` pixels (at least the centre pixel), smoothed as CIFAR-10-C does, summing to 1."""
    reach = max(1, int(np.ceil(radius)))
    y, x = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    disk = (x**2 + y**2 <= radius**2).astype(float)
    disk = ndimage.gaussian_filter(disk, alias_sigma)
    return disk / disk.sum()


def defocus_blur(images, radius, rng=None):
    kernel = disk_kernel(radius)[None, :, :, None]  # the same disk for every image and channel
    blurred = ndimage.convolve(images / 255.0, kernel, mode="reflect")
    return to_uint8(blurred)


def contrast(images, factor, rng=None):
    x = images / 255.0
    means = x.mean(axis=(1, 2, 3), keepdims=True)
    return to_uint8((x - means) * factor + means)


def brightness(images, amount, rng=None):
    """HSV value + amount, hue and saturation kept: every channel scaled by min(V + amount, 1) / V."""
    x = images / 255.0
    value = x.max(axis=-1, keepdims=True)
    scale = np.divide(np.minimum(value + amount, 1.0), value, out=np.ones_like(value), where=value > 0)
    brightened = np.where(value > 0, x * scale, amount)  # black becomes grey of value `amount`
    return to_uint8(brightened)


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
    small = (max(1, round(width * fraction)), max(1, round(height * fraction)))
    out = np.empty_like(images)
    for i, image in enumerate(images):
        reduced = Image.fromarray(image).resize(small, Image.Resampling.BOX)
        out[i] = np.asarray(reduced.resize((width, height), Image.Resampling.BOX))
    return out


FUNCTIONS = {name: globals()[name] for name in CORRUPTIONS}


def to_uint8(x):
    return np.clip(np.round(x * 255), 0, 255).astype(np.uint8)


def corrupt(images, name, parameter, seed, severity):
    """`images` with corruption `name` at `parameter`; the same (seed, name, severity) give the same noise."""
    rng = np.random.default_rng([seed, CORRUPTIONS.index(name), severity])
    return FUNCTIONS[name](images, parameter, rng)
