"""Read sections of params.yaml and check every key of them before any work is done.

Each key has a rule saying what is allowed; an unknown key gets the nearest valid
name suggested. Every problem is one PipelineError line naming the key. The rules of
each section live beside the code that uses it (e.g. cifar/data/params.py).
"""

import difflib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from cifar.core.errors import PipelineError

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


def param(rule):
    """A field of a recipe dataclass, checked by `rule` when its section of params.yaml is read."""
    return field(metadata={"rule": rule})


def rules_of(recipe_class):
    """{key: rule} of a recipe dataclass whose fields are `param`s: its section's rules."""
    return {item.name: item.metadata["rule"] for item in fields(recipe_class)}


def check_section(params, section, rules):
    """The validated values of one section of a params mapping; PipelineError on the first problem."""
    if not isinstance(params, dict):
        raise PipelineError("params.yaml: the top level must be a mapping of sections")
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
    return values


def _suggest(name, valid):
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return "; valid: " + ", ".join(valid)


def read_params_file(path=PARAMS_FILE):
    """The parsed params file; PipelineError naming the file when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise PipelineError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise PipelineError(f"{path}: YAML does not parse{yaml_error_place(err)}") from err


def yaml_error_place(err):
    """' at line L, column C: problem' of a YAMLError, on one line."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{where}: {getattr(err, 'problem', None) or 'invalid YAML'}"


def check_key(params, dotted, rule):
    """The validated value of one key, named `section.key`."""
    section, _, key = dotted.partition(".")
    values = params.get(section) if isinstance(params, dict) else None
    if not isinstance(values, dict) or key not in values:
        raise PipelineError(f"params.yaml: missing key {dotted}; allowed: {rule.description}")
    rule.check(dotted, values[key])
    return values[key]


def load_params(schema, path=PARAMS_FILE):
    """The validated values of `schema`'s entries, checked before any work: {name: values}.

    `schema` maps a section name to its rules ({"fetch": FETCH}: the whole section, unknown keys
    refused), or `section.key` to one rule ({"train.model": rule}). Each stage checks what it
    reads, and only that: the rules of another stage's params are that stage's code, which this
    stage does not depend on. The names are the ones dvc.yaml lists as the stage's params.
    """
    params = read_params_file(path)
    return {
        name: check_key(params, name, rules) if "." in name else check_section(params, name, rules)
        for name, rules in schema.items()
    }
