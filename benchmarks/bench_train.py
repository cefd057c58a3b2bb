"""Training throughput of seed_cnn at the tutorial's recipe (batch 32), images per second.

Ours: the train stage's loop (uint8 images in memory, normalised inside the model,
per-epoch stateless shuffle, tf.data with prefetch, deterministic ops) under the
stage's TensorFlow settings (oneDNN on, see cifar/__init__.py). Baseline: the
tutorial's way, plain `model.fit` on float32 NumPy arrays normalised beforehand,
under TensorFlow's default settings; and, to show where the gain comes from, the
same with our oneDNN setting. Each sample runs in its own process (TensorFlow reads the
setting once, at import), on the same random data, after a warm-up epoch; the sides take
turns, three rounds by default, and the row compares their medians (benchmarks/interleave.py).

    python -m benchmarks.bench_train [--images 6400] [--epochs 2] [--batch-size 32] [--repeats 3] [--json out.json]
"""

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.interleave import MIN_REPEATS, images_per_second, interleaved, ratio

PROJECT = Path(__file__).resolve().parents[1]
# An empty value makes TensorFlow fall back to its own default (it warns that it did).
TF_DEFAULT_ONEDNN = ""


def tutorial_model():
    """seed_cnn without the built-in normalisation: it takes float32 x/255 - 0.5."""
    import keras

    from cifar.models import seed_cnn

    model = seed_cnn.build(num_classes=10)
    inputs = keras.Input((32, 32, 3), dtype="float32")
    x = inputs
    for layer in model.layers[2:]:
        x = layer(x)
    return keras.Model(inputs, x)


def measure(part, count, epochs, batch_size, seed=0):
    """Images/s of one part ('ours' or 'baseline') in this process."""
    import keras
    import numpy as np

    from benchmarks.settings import settings
    from cifar import models
    from cifar.core.params import read_params_file
    from cifar.training.batches import training_batches
    from cifar.training.loop import compile_model

    # the tutorial's recipe, params.yaml's: Adamax at 0.005 (its exponential decay, a callback of the
    # training, left out: the rate of its first epoch)
    seed_cnn = models.model("seed_cnn")
    tutorial = models.recipe("seed_cnn", read_params_file(PROJECT / "params.yaml"))

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, 10, count), 10)
    keras.utils.set_random_seed(seed)
    if part == "ours":
        from cifar.core.runtime import configure_tensorflow

        configure_tensorflow()  # as the train stage does
        model = seed_cnn.build(tutorial, 10)
        compile_model(model, seed_cnn, tutorial, steps_per_epoch=None)
        steps = math.ceil(count / batch_size)
        fit = lambda n: model.fit(  # noqa: E731
            training_batches(x, y, batch_size, seed, 0, n), steps_per_epoch=steps, epochs=n, verbose=0
        )
    else:
        model = tutorial_model()
        compile_model(model, seed_cnn, tutorial, steps_per_epoch=None)
        x_float = (x / 255 - 0.5).astype("float32")  # the tutorial's normalize()
        fit = lambda n: model.fit(x_float, y, batch_size=batch_size, epochs=n, shuffle=True, verbose=0)  # noqa: E731
    return {"images_per_s": round(images_per_second(fit, count, epochs), 1), "settings": settings()}


def in_subprocess(part, count, epochs, batch_size, onednn=None):
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    command = [
        sys.executable,
        "-m",
        "benchmarks.bench_train",
        "--part",
        part,
        "--images",
        str(count),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def run(count=6400, epochs=2, batch_size=32, same_settings=True, repeats=MIN_REPEATS, progress=print):
    """Ours vs the tutorial's way at TensorFlow's defaults (and, if `same_settings`, at ours), interleaved."""
    sides = {
        "ours": lambda: in_subprocess("ours", count, epochs, batch_size),
        "baseline": lambda: in_subprocess("baseline", count, epochs, batch_size, onednn=TF_DEFAULT_ONEDNN),
    }
    if same_settings:
        sides["baseline_with_our_settings"] = lambda: in_subprocess("baseline", count, epochs, batch_size)
    settings = {}

    def images_per_s(name, measure):
        def sample():
            result = measure()
            settings[name] = result["settings"]
            return result["images_per_s"]

        return sample

    progress(f"train throughput, batch {batch_size}, {count} images x {epochs} epochs, {repeats} rounds:")
    summaries = interleaved({name: images_per_s(name, m) for name, m in sides.items()}, repeats, progress)
    row = {
        "benchmark": "train_throughput",
        "batch_size": batch_size,
        "images": count,
        "images_per_s": summaries,
        "ours_images_per_s": summaries["ours"]["median"],
        "baseline_images_per_s": summaries["baseline"]["median"],
        "ratio": ratio(summaries["ours"], summaries["baseline"], "higher"),
        "settings": settings,
    }
    print(
        f"train throughput (batch {batch_size}), medians of {repeats}: ours {row['ours_images_per_s']:.0f} img/s "
        f"(spread {summaries['ours']['spread']:.0%}); plain model.fit float32 {row['baseline_images_per_s']:.0f} "
        f"img/s at TensorFlow's defaults (spread {summaries['baseline']['spread']:.0%}); ratio {row['ratio']:.2f}x"
    )
    if same_settings:
        same = summaries["baseline_with_our_settings"]
        row["ratio_at_same_settings"] = ratio(summaries["ours"], same, "higher")
        print(
            f"  plain model.fit float32 with our oneDNN setting: {same['median']:.0f} img/s "
            f"(ratio {row['ratio_at_same_settings']:.2f}x)"
        )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="rounds of the interleaved sides")
    parser.add_argument("--part", choices=["ours", "baseline"], help=argparse.SUPPRESS)  # one subprocess's share
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.part:
        import cifar  # noqa: F401  (sets the stage's TensorFlow environment unless the caller set it)

        print(json.dumps(measure(args.part, args.images, args.epochs, args.batch_size)))
        return
    row = run(args.images, args.epochs, args.batch_size, repeats=args.repeats)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
