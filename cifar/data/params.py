"""The rules of params.yaml's `fetch` and `preprocess` sections (each key is documented in params.yaml)."""

from dataclasses import dataclass

from PIL import ImageColor

from cifar.core.errors import PipelineError
from cifar.core.params import Rule, choice, non_negative_int, positive_int, positive_number

# How a picture that is not square becomes 32x32 (cifar/data/images.py `fitted`).
ASPECTS = ("squash", "crop", "pad")


@dataclass(frozen=True)
class ColourRule:
    """A colour Pillow's ImageColor reads, as the decoder will use it."""

    description: str = "a colour: a name (white, black, gray, ...), #rrggbb or rgb(r, g, b)"

    def check(self, key, value):
        try:
            ImageColor.getrgb(value)
        except (ValueError, AttributeError, TypeError):
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}") from None


FETCH = {
    "source": Rule((str,), "a path: a download descriptor (data/sources/*.yaml), or a dataset archive or directory"),
    "retries": positive_int("an integer from 1 to 20", maximum=20),
    "timeout": positive_number("seconds, a number > 0"),
}

PREPROCESS = {
    "max_train_images": positive_int("null (all images) or an integer >= 1", nullable=True),
    "max_test_images": positive_int("null (all images) or an integer >= 1", nullable=True),
    "seed": non_negative_int(),
    "labels": choice("fine", "coarse"),
    "aspect": choice(*ASPECTS),
    "background": ColourRule(),
}
