"""Maximum stimuli of every conv filter: the visualise stage versus the tutorial's method.

The tutorial builds one backend graph per filter (K.function) and runs its 20
steps on a single image, filter after filter. The baseline here does the same
with current APIs: a new tf.function traced per filter, called once per step.
Ours optimises all filters of a layer as one batch in one compiled function.
Both run in this process on the same model; the ratio is baseline / ours.

    python -m benchmarks.bench_visualize [--model models/model.keras] [--json out.json]
"""

import argparse
import json
import time
from pathlib import Path


import stages  # noqa: F401  (first: sets TensorFlow's environment before it loads)
import keras
import numpy as np
import tensorflow as tf

from stages import stimuli
from stages.models import build_model


def tutorial_stimulus(submodel, filter_index, iterations, step, rng):
    """find_maximum_stimuli as the tutorial writes it: one graph for this filter, 20 numpy steps."""

    @tf.function
    def iterate(image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            loss = tf.reduce_mean(submodel(image, training=False)[:, :, :, filter_index])
        grads = tape.gradient(loss, image)
        return loss, grads / (tf.sqrt(tf.reduce_sum(tf.square(grads))) + 1e-10)

    image = ((rng.random((1, 32, 32, 3)) - 0.5) * 0.1).astype("float32")
    loss = None
    for _ in range(iterations):
        loss, grads = iterate(tf.constant(image))
        image += grads.numpy() * step
    return image[0], float(loss)


def run(model, iterations=20, step=1.0, seed=0):
    image = stimuli.normalized_input(model)
    layers = stimuli.conv_activation_layers(model)
    rows = []
    for layer in layers:
        submodel = keras.Model(image, layer.output)
        count = layer.output.shape[-1]
        start = time.perf_counter()
        stimuli.maximum_stimuli(
            submodel, count, np.random.default_rng(seed), iterations, step, stimuli.CONV_NOISE_SCALE, seed=seed
        )
        ours = time.perf_counter() - start
        rng = np.random.default_rng(seed)
        start = time.perf_counter()
        for index in range(count):
            tutorial_stimulus(submodel, index, iterations, step, rng)
        baseline = time.perf_counter() - start
        rows.append({"layer": layer.name, "filters": count, "ours_s": round(ours, 3), "tutorial_s": round(baseline, 3)})
        print(
            f"{layer.name:16s} {count:4d} filters  ours {ours:7.2f}s  tutorial {baseline:7.2f}s  "
            f"ratio {baseline / ours:6.1f}x",
            flush=True,
        )
    ours = sum(r["ours_s"] for r in rows)
    baseline = sum(r["tutorial_s"] for r in rows)
    total = {
        "filters": sum(r["filters"] for r in rows),
        "ours_s": round(ours, 2),
        "tutorial_s": round(baseline, 2),
        "ratio": round(baseline / ours, 1),
    }
    print(
        f"{'all layers':16s} {total['filters']:4d} filters  ours {ours:7.2f}s  tutorial {baseline:7.2f}s  "
        f"ratio {total['ratio']:6.1f}x"
    )
    return {"benchmark": "visualize", "layers": rows, "total": total}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.keras", help="trained model (an untrained seed_cnn if absent)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    tf.config.experimental.enable_op_determinism()
    if Path(args.model).is_file():
        model = keras.models.load_model(args.model)
    else:
        print(f"{args.model} not found: timing an untrained seed_cnn (same cost)")
        model = build_model("seed_cnn", 10)
    result = run(model)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
