"""Load params.yaml and check every key before any work is done.

Each key has a rule saying what is allowed; an unknown key gets the nearest
valid name suggested. Every problem is one PipelineError line naming the key.
"""

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from stages import precision
from stages.errors import PipelineError

PARAMS_FILE = Path("params.yaml")


@dataclass(frozen=True)
class Rule:
    """What a param may hold: its kinds, bounds or choices, and whether null is allowed."""

    kinds: tuple
    description: str
    nullable: bool = False
    minimum: float | None = None
    exclusive_minimum: bool = False
    maximum: float | None = None
    choices: tuple | None = None
    pattern: str | None = None

    def check(self, key, value):
        if value is None:
            if self.nullable:
                return
            raise PipelineError(f"params.yaml: {key} must not be null; allowed: {self.description}")
        # bool is an int in Python, but `epochs: true` is a mistake, not 1.
        if isinstance(value, bool) and bool not in self.kinds:
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        if not isinstance(value, self.kinds):
            raise PipelineError(
                f"params.yaml: {key} is {value!r} ({type(value).__name__}); allowed: {self.description}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        if self.choices is not None and value not in self.choices:
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        if self.minimum is not None:
            too_small = value <= self.minimum if self.exclusive_minimum else value < self.minimum
            if too_small:
                raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        if self.maximum is not None and value > self.maximum:
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")


@dataclass(frozen=True)
class ListRule:
    """A list of `length` values, each following `item`."""

    item: Rule
    length: int
    description: str

    def check(self, key, value):
        if not isinstance(value, list) or len(value) != self.length:
            raise PipelineError(f"params.yaml: {key} is {value!r}; allowed: {self.description}")
        for index, item in enumerate(value):
            self.item.check(f"{key}[{index}]", item)


def positive_int(description="an integer >= 1", nullable=False, maximum=None):
    return Rule((int,), description, nullable=nullable, minimum=1, maximum=maximum)


def non_negative_int(description="an integer >= 0"):
    return Rule((int,), description, minimum=0)


def positive_number(description="a number > 0", maximum=None):
    return Rule((int, float), description, minimum=0, exclusive_minimum=True, maximum=maximum)


def choice(*options):
    return Rule((str,), "one of " + ", ".join(options), choices=options)


def fraction(description="a number from 0 to 1"):
    return Rule((int, float), description, minimum=0, maximum=1)


def boolean():
    return Rule((bool,), "true or false")


# auto: one device, or MirroredStrategy over every GPU when there are several.
STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")
MODEL_NAMES = ("seed_cnn", "fast")  # stages/models.py builds each

SCHEMA = {
    "fetch": {
        "source": Rule((str,), "a URL (https://, http://, file://) or a local archive or directory path"),
        "checksum": Rule(
            (str,),
            "null (the official md5 for the official archive, no check otherwise), "
            "'md5:<32 hex digits>' or 'sha256:<64 hex digits>'",
            nullable=True,
            pattern=r"md5:[0-9a-fA-F]{32}|sha256:[0-9a-fA-F]{64}",
        ),
        "retries": positive_int("an integer from 1 to 20", maximum=20),
        "timeout": positive_number("seconds, a number > 0"),
    },
    "preprocess": {
        "max_train_images": positive_int("null (all images) or an integer >= 1", nullable=True),
        "max_test_images": positive_int("null (all images) or an integer >= 1", nullable=True),
        "seed": non_negative_int(),
    },
    "train": {
        "model": choice(*MODEL_NAMES),
        "epochs": positive_int(),
        "batch_size": positive_int(),
        "learning_rate": positive_number(),
        "schedule": choice("exponential", "warmup_cosine"),
        "lr_decay": positive_number("a number in (0, 1]", maximum=1),
        "warmup_epochs": Rule((int, float), "a number of epochs from 0 to 100", minimum=0, maximum=100),
        "precision": choice(*precision.CHOICES),
        "strategy": choice(*STRATEGIES),
        "seed": non_negative_int(),
    },
    "fast": {
        "epochs": positive_int(),
        "batch_size": positive_int(),
        "learning_rate": positive_number(),
        "warmup_epochs": Rule((int, float), "a number of epochs from 0 to 100", minimum=0, maximum=100),
        "final_lr_fraction": fraction(),
        "momentum": Rule((int, float), "a number from 0 to less than 1", minimum=0, maximum=0.999),
        "nesterov": boolean(),
        "weight_decay": Rule((int, float), "a number >= 0", minimum=0),
        "label_smoothing": fraction("a number from 0 to 1 (0 = off)"),
        "ema_momentum": Rule(
            (int, float), "null (off) or a number from 0 to less than 1", nullable=True, minimum=0, maximum=0.9999
        ),
        "widths": ListRule(
            positive_int("an integer from 1 to 4096", maximum=4096), 3, "a list of 3 integers from 1 to 4096"
        ),
        "batchnorm_momentum": fraction(),
        "bias_lr_scale": positive_number(),
        "output_scale": positive_number(),
        "flip": boolean(),
        "translate": Rule((int,), "an integer from 0 to 8 (pixels; 0 = off)", minimum=0, maximum=8),
        "tta_level": Rule(
            (int,), "0 (off), 1 (image and its mirror) or 2 (also shifted by a pixel)", minimum=0, maximum=2
        ),
    },
    "evaluate": {
        "batch_size": positive_int(),
        "seed": non_negative_int(),
    },
    "visualize": {
        "iterations": positive_int("an integer from 1 to 10000", maximum=10_000),
        "step": positive_number(),
        "seed": non_negative_int(),
        "jitter": Rule((int,), "an integer from 0 to 16 (pixels; 0 = off)", minimum=0, maximum=16),
        "blur_sigma": Rule((int, float), "a number from 0 to 5 (pixels; 0 = off)", minimum=0, maximum=5),
    },
}


def validate(params):
    """Check a whole params mapping against SCHEMA; raise PipelineError on the first problem."""
    if not isinstance(params, dict):
        raise PipelineError("params.yaml: the top level must be a mapping of sections: " + ", ".join(SCHEMA))
    for section in params:
        if section not in SCHEMA:
            raise PipelineError(f"params.yaml: unknown section {section!r}{_suggest(section, SCHEMA)}")
    for section, rules in SCHEMA.items():
        if section not in params:
            raise PipelineError(f"params.yaml: missing section {section!r}")
        values = params[section]
        if not isinstance(values, dict):
            raise PipelineError(f"params.yaml: section {section!r} must be a mapping of keys: " + ", ".join(rules))
        for key in values:
            if key not in rules:
                raise PipelineError(f"params.yaml: unknown key {section}.{key}{_suggest(key, rules)}")
        for key, rule in rules.items():
            if key not in values:
                raise PipelineError(f"params.yaml: missing key {section}.{key}; allowed: {rule.description}")
            rule.check(f"{section}.{key}", values[key])
    return params


def _suggest(name, valid):
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "; valid: " + ", ".join(valid)


def load_params(path=PARAMS_FILE):
    """Read and validate the whole params file; return it as a dict of sections."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise PipelineError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or "invalid YAML"
        raise PipelineError(f"{path}: YAML does not parse{where}: {problem}") from err
    return validate(params)


def load_section(section, path=PARAMS_FILE):
    return load_params(path)[section]


def training_recipe(params):
    """The hyperparameters the chosen model trains with: the `fast` section for the fast model, else `train`."""
    return params["fast"] if params["train"]["model"] == "fast" else params["train"]


def evaluation_tta_level(params):
    """Test-time augmentation level for evaluation: the fast recipe's; the tutorial's model has none."""
    return params["fast"]["tta_level"] if params["train"]["model"] == "fast" else 0
