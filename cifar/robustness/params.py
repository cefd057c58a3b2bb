"""The rules of params.yaml's `robustness` section (each key is documented in params.yaml)."""

from cifar.core.params import ListRule, Rule, non_negative_int, positive_int

SEVERITIES = 5


def levels(kinds, description, minimum, maximum):
    item = Rule(kinds, description, minimum=minimum, maximum=maximum)
    return ListRule(item, SEVERITIES, f"a list of {SEVERITIES} values, each {description}")


ROBUSTNESS = {
    "max_images": positive_int("null (the whole test set) or an integer >= 1", nullable=True),
    "seed": non_negative_int(),
    "gaussian_noise": levels((int, float), "a noise sigma from 0 to 1", 0, 1),
    "defocus_blur": levels((int, float), "a disk radius from 0 to 8 pixels", 0, 8),
    "defocus_blur_smoothing": levels((int, float), "a Gaussian sigma from 0.01 to 2 pixels", 0.01, 2),
    "contrast": levels((int, float), "a contrast factor from 0 to 1", 0, 1),
    "brightness": levels((int, float), "an added brightness from 0 to 1", 0, 1),
    "jpeg_compression": levels((int,), "a JPEG quality from 1 to 95", 1, 95),
    "pixelate": levels((int, float), "a size fraction from 0.05 to 1", 0.05, 1),
}
