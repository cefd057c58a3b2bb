"""Classify image files with the trained model: top classes with probabilities.

Images of any size or format Pillow reads are converted to 32x32 RGB as in
preprocess. An unreadable file or a directory gets one line on stderr; the other
images are still classified, and the exit status is 1. A missing model: exit 2.
"""

import json
import sys
from pathlib import Path

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.errors import PipelineError
from cifar.data.images import decode_image

MODEL_FILE = Artifacts().model


def classes_file(model_file):
    """The class names the train stage writes beside the model (models/classes.json)."""
    return Path(model_file).with_name(Artifacts().model_classes.name)


def load_classifier(model_file):
    """(model, class names); PipelineError when either is missing or unreadable."""
    from cifar.export.classifiers import load_classifier as load  # imports TensorFlow: seconds

    model = load(model_file)
    try:
        classes = json.loads(classes_file(model_file).read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{classes_file(model_file)}: cannot read the class names: {err}") from err
    return model, classes


def read_images(paths):
    """Decode each path; returns (decoded {path: array}, errors {path: message})."""
    images, errors = {}, {}
    for path in paths:
        path = Path(path)
        try:
            if path.is_dir():
                raise PipelineError(f"{path}: is a directory, not an image")
            try:
                data = path.read_bytes()
            except OSError as err:
                raise PipelineError(f"{path}: cannot read: {err.strerror or err}") from err
            images[str(path)] = decode_image(data, str(path))
        except PipelineError as err:
            errors[str(path)] = str(err)
    return images, errors


def top_classes(probabilities, classes, top):
    order = np.argsort(-probabilities)[:top]
    return [{"class": classes[i], "probability": round(float(probabilities[i]), 6)} for i in order]


def predict(paths, model_file=MODEL_FILE, top=3):
    """{path: [top classes]} for readable images, and {path: error} for the others."""
    model, classes = load_classifier(model_file)
    images, errors = read_images(paths)
    results = {}
    if images:
        probabilities = model.predict(np.stack(list(images.values())))
        results = {path: top_classes(p, classes, top) for path, p in zip(images, probabilities)}
    return results, errors


def main(argv=None):
    parser = cli.parser("stages.predict", __doc__)
    parser.add_argument("images", nargs="+", help="image files (png, jpg, ...)")
    parser.add_argument(
        "--model",
        default=str(MODEL_FILE),
        help="a .keras or .tflite file, or a SavedModel folder, with classes.json beside it (default: %(default)s)",
    )
    parser.add_argument("--top", type=int, default=3, help="how many classes to show (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    if args.top < 1:
        raise PipelineError(f"--top must be >= 1, got {args.top}")
    results, errors = predict(args.images, args.model, args.top)
    if args.json:
        print(json.dumps({"predictions": results, "errors": errors}, indent=2))
    else:
        for path, ranked in results.items():
            print(f"{path}: " + ", ".join(f"{r['class']} {r['probability']:.3f}" for r in ranked))
    for message in errors.values():
        print(f"error: {message}", file=sys.stderr)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    sys.exit(cli.run(main))
