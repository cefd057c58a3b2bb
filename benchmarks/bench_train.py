"""Training throughput of seed_cnn at the tutorial's recipe (batch 32), images per second.

Ours: the train stage's input pipeline (uint8 images in memory, normalised inside
the model, per-epoch stateless shuffle, tf.data with prefetch). Baseline: the
tutorial's way, plain `model.fit` on float32 NumPy arrays normalised beforehand.
Both in this process, on the same data, after a warm-up epoch each.

    python -m benchmarks.bench_train [--images 6400] [--epochs 2] [--json out.json]
"""

import argparse
import json
import math
import time
from pathlib import Path

import stages  # noqa: F401  (first: sets TensorFlow's environment before it loads)
import keras
import numpy as np

from stages.models import build_model, seed_cnn
from stages.train import compile_model, training_batches


def tutorial_model():
    """seed_cnn without the built-in normalisation: it takes float32 x/255 - 0.5."""
    model = seed_cnn(10)
    inputs = keras.Input((32, 32, 3), dtype="float32")
    x = inputs
    for layer in model.layers[2:]:
        x = layer(x)
    return keras.Model(inputs, x)


def images_per_second(fit, count, epochs):
    fit(1)  # warm-up: tracing and first-epoch allocations
    start = time.perf_counter()
    fit(epochs)
    return count * epochs / (time.perf_counter() - start)


def run(count=6400, epochs=2, batch_size=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    y = keras.utils.to_categorical(rng.integers(0, 10, count), 10)

    keras.utils.set_random_seed(seed)
    ours_model = build_model("seed_cnn", 10)
    compile_model(ours_model, 0.005)
    steps = math.ceil(count / batch_size)
    ours = images_per_second(
        lambda n: ours_model.fit(
            training_batches(x, y, batch_size, seed, 0, n), steps_per_epoch=steps, epochs=n, verbose=0
        ),
        count,
        epochs,
    )

    keras.utils.set_random_seed(seed)
    baseline_model = tutorial_model()
    compile_model(baseline_model, 0.005)
    x_float = x / 255 - 0.5  # the tutorial's normalize(), float64 -> cast by Keras
    x_float = x_float.astype("float32")
    baseline = images_per_second(
        lambda n: baseline_model.fit(x_float, y, batch_size=batch_size, epochs=n, shuffle=True, verbose=0),
        count,
        epochs,
    )
    row = {
        "benchmark": "train_throughput",
        "batch_size": batch_size,
        "images": count,
        "ours_images_per_s": round(ours, 1),
        "baseline_images_per_s": round(baseline, 1),
        "ratio": round(ours / baseline, 2),
    }
    print(
        f"train throughput (batch {batch_size}): ours {ours:7.1f} img/s  plain model.fit float32 "
        f"{baseline:7.1f} img/s  ratio {ours / baseline:.2f}x"
    )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6400)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    row = run(args.images, args.epochs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
