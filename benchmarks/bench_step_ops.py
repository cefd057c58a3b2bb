"""The fast default's training step with our BatchNorm and activations against Keras's own, seconds a step.

    python -m benchmarks.bench_step_ops [--precision auto] [--steps 4] [--repeats 3] [--set key=value ...]
        [--json benchmarks/results/step_ops.json]

Ours (cifar/network/layers.py): FusedBatchNormalization, TensorFlow's fused BatchNorm kernel, and GELU
and SiLU computed in float32 inside a bfloat16 step with their derivatives written out. Baseline:
Keras's BatchNormalization and its "gelu" and "silu", everything else the same. Both networks are built
in one process at the params.yaml recipe (the fast default at full widths unless `--set` says
otherwise), compiled as the train stage does, and trained on the same random batches, the sides in
turn (benchmarks/interleave.py): each sample is the wall time of `--steps` steps after two warm-up
steps, divided by the steps.
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

from benchmarks.interleave import MIN_REPEATS, interleaved, ratio
from benchmarks.recipes import project_model
from benchmarks.settings import settings
from benchmarks.workspace import parse_override


def keras_layers_instead():
    """Point the network builder at Keras's own BatchNormalization and activations; returns the undo."""
    from cifar.models import airbench_net

    saved = airbench_net.FusedBatchNormalization, dict(airbench_net.ACTIVATIONS)
    airbench_net.FusedBatchNormalization = keras.layers.BatchNormalization
    airbench_net.ACTIVATIONS.update(gelu="gelu", silu="silu")

    def undo():
        airbench_net.FusedBatchNormalization = saved[0]
        airbench_net.ACTIVATIONS.update(saved[1])

    return undo


class StepClock(keras.callbacks.Callback):
    """The time at the end of each step of the last fit."""

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append(time.perf_counter())


def trainer(model, recipe, policy, side, steps, images, labels, seed):
    """A measure of one side: trains its network `steps` steps, returns seconds a step."""
    from cifar.training import precision
    from cifar.training.batches import training_batches
    from cifar.training.loop import compile_model

    undo = keras_layers_instead() if side == "keras" else (lambda: None)
    try:
        with precision.building_with(policy):
            network = model.build(recipe, 10, images, seed, 1)
    finally:
        undo()
    compile_model(network, model, recipe, len(images) // recipe.batch_size)
    batches = training_batches(images, labels, recipe.batch_size, seed, 0, 1, model.batching(recipe)).repeat()
    network.fit(batches, steps_per_epoch=2, epochs=1, verbose=0)  # traces, warms up
    clock = StepClock()

    measure_layers = sorted({type(layer).__name__ for layer in network.layers})
    activations = sorted(
        f"{layer.activation.__module__}.{layer.activation.__name__}"
        for layer in network.layers
        if isinstance(layer, keras.layers.Activation)
    )

    def measure():
        # timed inside one fit, from the end of its second step: a fit's first steps wait on its
        # fresh input iterator (seen here as steps of a flat 2.56 s on the Zen 5, either side)
        network.fit(batches, steps_per_epoch=steps + 2, epochs=1, verbose=0, callbacks=[clock])
        return (clock.ends[-1] - clock.ends[1]) / steps

    measure.layers, measure.activations = measure_layers, activations
    return measure


def run(model_name="airbench94_muon", overrides=(), precision_setting="auto", steps=4, repeats=MIN_REPEATS, seed=0):
    from cifar.core.runtime import configure_tensorflow
    from cifar.training import precision

    model, recipe = project_model(model_name, overrides)
    policy = precision.resolve(precision_setting)
    configure_tensorflow()
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    count = 4 * recipe.batch_size
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    labels = keras.utils.to_categorical(rng.integers(0, 10, count), 10)
    sides = {side: trainer(model, recipe, policy, side, steps, images, labels, seed) for side in ("ours", "keras")}
    result = interleaved(sides, repeats)
    return {
        "model": model_name,
        "batch_size": recipe.batch_size,
        "policy": policy,
        "settings": settings(),
        "layers": {side: measure.layers for side, measure in sides.items()},
        "activations": {side: measure.activations for side, measure in sides.items()},
        "seconds_per_step": result,
        "speedup": ratio(result["ours"], result["keras"], "lower"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="airbench94_muon")
    parser.add_argument("--precision", default="auto", help="auto, float32 or mixed_bfloat16")
    parser.add_argument("--steps", type=int, default=4, help="steps per sample (after two warm-up steps)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS)
    parser.add_argument("--set", dest="overrides", action="append", default=[], type=parse_override)
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.model, args.overrides, args.precision, args.steps, args.repeats)
    timing = result["seconds_per_step"]
    print(
        f"{result['model']} at batch {result['batch_size']} in {result['policy']}, CPU: {result['settings']['cpu']}\n"
        f"  ours:  {timing['ours']['median']:.3f} s a step (spread {timing['ours']['spread']})\n"
        f"  Keras: {timing['keras']['median']:.3f} s a step (spread {timing['keras']['spread']})\n"
        f"  {result['speedup']}x"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
