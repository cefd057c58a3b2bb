"""Maximum stimuli of every conv filter: the visualise stage versus the tutorial's method.

The tutorial builds one backend graph per filter (K.function) and runs its 20
steps on a single image, filter after filter. The baseline here does the same
with current APIs: a new tf.function traced per filter, called once per step.
Ours optimises every filter of every layer in one compiled function, a batch per layer.
Both run in this process on the same model, taking turns; the ratio is of the medians.

    python -m benchmarks.bench_visualize [--model models/model.keras] [--repeats 3] [--json out.json]
"""

import argparse
import json
from pathlib import Path

import cifar  # noqa: F401  (first: sets TensorFlow's environment before it loads)

# isort: split
import keras
import numpy as np
import tensorflow as tf

from benchmarks.interleave import MIN_REPEATS, interleaved, ratio, seconds
from benchmarks.settings import settings
from cifar.core.runtime import configure_tensorflow
from cifar.models import seed_cnn
from cifar.network.trained import load_trained_model
from cifar.visualization import gradient_ascent


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


def run(model, iterations=20, step=1.0, seed=0, max_filters=None, repeats=MIN_REPEATS, progress=print):
    """Both methods on every filter of every conv layer (the first `max_filters` of each, if given),
    taking turns for `repeats` rounds; the ratio is of the medians."""
    image = gradient_ascent.normalized_image(model)
    layers = gradient_ascent.conv_activation_layers(model)
    submodels = [keras.Model(image, layer.output) for layer in layers]
    counts = [min(layer.output.shape[-1], max_filters or layer.output.shape[-1]) for layer in layers]

    def ours():
        # as the stage runs it: a fresh compiled loop each time, its tracing included
        rng = np.random.default_rng(seed)
        starts = [gradient_ascent.starting_noise(count, rng, gradient_ascent.CONV_NOISE_SCALE) for count in counts]
        gradient_ascent.maximum_stimuli(submodels, starts, iterations, step, seed=seed)

    def tutorial():
        rng = np.random.default_rng(seed)
        for submodel, count in zip(submodels, counts):
            for index in range(count):
                tutorial_stimulus(submodel, index, iterations, step, rng)

    progress(f"stimuli of {sum(counts)} filters in {len(layers)} layers, {repeats} rounds:")
    summaries = interleaved({"ours": seconds(ours), "tutorial": seconds(tutorial)}, repeats, progress)
    total = {
        "filters": sum(counts),
        "ours_s": summaries["ours"]["median"],
        "tutorial_s": summaries["tutorial"]["median"],
        "ratio": ratio(summaries["ours"], summaries["tutorial"], "lower"),
    }
    print(
        f"all {total['filters']} filters, medians of {repeats}: ours {total['ours_s']:.2f}s "
        f"(spread {summaries['ours']['spread']:.0%})  tutorial {total['tutorial_s']:.2f}s "
        f"(spread {summaries['tutorial']['spread']:.0%})  ratio {total['ratio']}x"
    )
    return {"benchmark": "visualize", "seconds": summaries, "total": total, "settings": settings()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/model.keras", help="trained model (an untrained seed_cnn if absent)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="rounds of the interleaved sides")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    configure_tensorflow()  # as the stage does
    if Path(args.model).is_file():
        model = load_trained_model(args.model)
    else:
        print(f"{args.model} not found: timing an untrained seed_cnn (same cost)")
        model = seed_cnn.build(num_classes=10)
    result = run(model, repeats=args.repeats)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
