"""Classify image files, or folders of them, with the trained model: top classes with probabilities.

Each file is decoded as an image viewer shows it (orientation, bit depth, transparency, colour
profile: cifar/data/images.py), then fitted to 32x32 as the model's training images were
(--aspect and --background default to the input.json beside the model). Folders are searched
recursively, in name order, for image files; hidden and desktop files (.DS_Store, Thumbs.db) are
skipped. Files are decoded and classified a batch at a time, so memory does not grow with their
number, and each result is printed as soon as its batch is done.

A file that cannot be classified gets one line on stderr; the others still are, and the exit
status is 1. A missing model or a bad option: exit 2. TensorFlow's own log lines are hidden
unless --verbose (or TF_CPP_MIN_LOG_LEVEL=0).
"""

import csv
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.core.tensorflow_log import show_tensorflow_log
from cifar.data.images import Fitting, decode_image, is_image_name
from cifar.data.os_files import is_os_file
from cifar.data.params import ASPECTS, PREPROCESS

MODEL_FILE = Artifacts().model
FITTING_KEYS = tuple(field.name for field in fields(Fitting))  # input.json's: preprocess's params of those names
BATCH_SIZE = 256  # images decoded and held at once: a few MB of pixels, whatever the files' sizes


def beside_model(model_file, artifact):
    """The file the train (or export) stage writes beside the model, e.g. classes.json."""
    return Path(model_file).with_name(artifact.name)


def load_classifier(model_file):
    """(model, class names); PipelineError when either is missing or unreadable."""
    from cifar.export.classifiers import load_classifier as load  # imports TensorFlow: seconds

    model = load(model_file)
    names = beside_model(model_file, Artifacts().model_classes)
    try:
        classes = json.loads(names.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{names}: cannot read the class names: {err}") from err
    return model, classes


def model_fitting(model_file, aspect=None, background=None):
    """How to fit pictures for this model: the options given, else what its training images had."""
    recorded_in = beside_model(model_file, Artifacts().model_input)
    recorded = {key: value for key, value in Artifacts().load_input(recorded_in).items() if key in FITTING_KEYS}
    for key, value in recorded.items():
        check_fitting(key, value, key, where=f"{recorded_in}: ")
    given = {key: value for key, value in (("aspect", aspect), ("background", background)) if value is not None}
    for key, value in given.items():
        check_fitting(key, value, f"--{key}")
    return Fitting(**{**recorded, **given})


def check_fitting(key, value, shown_as, where=""):
    """preprocess's rule for `key` (aspect, background), its one error line naming `shown_as` in `where`."""
    try:
        PREPROCESS[key].check(shown_as, value)
    except PipelineError as err:
        raise PipelineError(where + str(err).removeprefix("params.yaml: ")) from None


def image_files(paths):
    """[(path, None)] for each file to classify, or [(path, error)]: files as given, folders searched."""
    found = []
    for given in map(Path, paths):
        if not given.is_dir():
            found.append((given, None if given.exists() else f"{given}: no such file"))
            continue
        inside = []
        for folder, subfolders, files in os.walk(given):
            under = Path(folder).relative_to(given).as_posix().removeprefix(".")  # "" at the top
            subfolders[:] = sorted(name for name in subfolders if not is_os_file(f"{under}/{name}/"))
            inside += [
                Path(folder, name) for name in files if is_image_name(name) and not is_os_file(f"{under}/{name}")
            ]
        found += [(path, None) for path in sorted(inside)] or [(given, f"{given}: no image files in this folder")]
    return found


def decode_file(path, fitting):
    """(the 32x32 input, None), or (None, the error line)."""
    try:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise PipelineError(f"{path}: cannot read: {err.strerror or err}") from err
        return decode_image(data, str(path), fitting), None
    except PipelineError as err:
        return None, str(err)


def top_classes(probabilities, classes, top):
    order = np.argsort(-probabilities)[:top]
    return [{"class": classes[i], "probability": round(float(probabilities[i]), 6)} for i in order]


def classify(files, model, classes, fitting, top=3, batch_size=BATCH_SIZE, threads=None):
    """Yield (path, top classes, None) or (path, None, error) for each of `files`, in order, a batch at a time."""
    with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        for start in range(0, len(files), batch_size):
            batch = files[start : start + batch_size]
            decoded = list(pool.map(lambda item: decode_file(item[0], fitting) if item[1] is None else item, batch))
            good = [image for image, error in decoded if error is None]
            probabilities = iter(model.predict(np.stack(good)) if good else [])
            for (path, _), (_, error) in zip(batch, decoded):
                yield (
                    (str(path), None, error)
                    if error
                    else (str(path), top_classes(next(probabilities), classes, top), None)
                )


class TextOutput:
    def __init__(self, out, top):
        self.out = out

    def write(self, path, ranked):
        print(f"{path}: " + ", ".join(f"{r['class']} {r['probability']:.3f}" for r in ranked), file=self.out)

    def close(self, errors):
        pass


class CsvOutput:
    """One row per image: path, then class and probability for each rank."""

    def __init__(self, out, top):
        self.writer = csv.writer(out, lineterminator="\n")
        self.writer.writerow(
            ["path"] + [f"{field}_{rank}" for rank in range(1, top + 1) for field in ("class", "probability")]
        )

    def write(self, path, ranked):
        self.writer.writerow([path] + [value for r in ranked for value in (r["class"], f"{r['probability']:.6f}")])

    def close(self, errors):
        pass


class JsonOutput:
    """{"predictions": {path: [...]}, "errors": {path: message}}, the predictions written as they come."""

    def __init__(self, out, top):
        self.out, self.first = out, True
        out.write('{\n  "predictions": {')

    def write(self, path, ranked):
        self.out.write(("\n" if self.first else ",\n") + f"    {json.dumps(path)}: {json.dumps(ranked)}")
        self.out.flush()
        self.first = False

    def close(self, errors):
        errors = json.dumps(errors, indent=2).replace("\n", "\n  ")
        self.out.write(("}" if self.first else "\n  }") + f',\n  "errors": {errors}\n}}\n')


class Progress:
    """`classified 512/2000 images (180/s)` on stderr, rewritten in place, on a terminal only."""

    def __init__(self, total, stream=None):
        self.total, self.stream, self.done = total, stream or sys.stderr, 0
        self.shown = self.stream.isatty() and total > 1
        self.started = time.monotonic()

    def advance(self):
        self.done += 1
        if self.shown and (self.done % 32 == 0 or self.done == self.total):
            rate = self.done / max(time.monotonic() - self.started, 1e-9)
            self.stream.write(f"\rclassified {self.done}/{self.total} images ({rate:.0f}/s)")
            self.stream.flush()

    def message(self, line):
        """A line of its own, above the progress line."""
        print(("\r\033[K" if self.shown else "") + line, file=self.stream)

    def close(self):
        if self.shown and self.done:
            self.stream.write("\n")


def main(argv=None):
    parser = cli.parser("stages.predict", __doc__)
    parser.add_argument("images", nargs="+", help="image files (jpg, png, heic, ...) or folders of them")
    parser.add_argument(
        "--model",
        default=str(MODEL_FILE),
        help="a .keras or .tflite file, or a SavedModel folder, with classes.json beside it (default: %(default)s)",
    )
    parser.add_argument("--top", type=int, default=3, help="how many classes to show (default: %(default)s)")
    formats = parser.add_mutually_exclusive_group()
    formats.add_argument("--json", action="store_true", help="one JSON object: predictions and errors")
    formats.add_argument("--csv", action="store_true", help="CSV: path, then class and probability per rank")
    parser.add_argument(
        "--aspect",
        choices=ASPECTS,
        help="how a picture that is not square becomes 32x32 (default: as the model was trained, input.json)",
    )
    parser.add_argument("--background", help="the colour under transparency and padding (default: as trained)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="images per batch (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines too")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise PipelineError(f"--top must be >= 1, got {args.top}")
    if args.batch_size < 1:
        raise PipelineError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.verbose:
        show_tensorflow_log()
    fitting = model_fitting(args.model, args.aspect, args.background)
    files = image_files(args.images)
    model, classes = load_classifier(args.model)
    output = (JsonOutput if args.json else CsvOutput if args.csv else TextOutput)(sys.stdout, args.top)
    progress, errors = Progress(len(files)), {}
    for path, ranked, error in classify(files, model, classes, fitting, args.top, args.batch_size):
        progress.advance()
        if error:
            errors[path] = error
            progress.message(f"error: {error}")
        else:
            output.write(path, ranked)
    progress.close()
    output.close(errors)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(cli.run(main))
