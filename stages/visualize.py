"""Stage visualize: maximum stimuli of every conv filter and every class, and the first-layer kernels.

Reads the model, data/prepared/{stats,classes}.json and params.yaml's `visualize` section. For every
convolutional activation layer, gradient ascent finds the input that most excites each filter (the
tutorial's method; every layer in one compiled loop); the same for each class score. Writes
reports/figures/stimuli/<layer>.png (a tile per filter, titled with its final activation; dead
filters, whose activation stays <= 0, marked), reports/figures/stimuli/classes.png,
reports/figures/kernels.png, and reports/stimuli.json with every activation.
"""

import sys
import time

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import atomic_directory, save_figure, write_json
from cifar.core.params import Rule, load_params, non_negative_int, positive_int, positive_number

# params.yaml's `visualize` section (each key is documented there)
VISUALIZE = {
    "iterations": positive_int("an integer from 1 to 10000", maximum=10_000),
    "step": positive_number(),
    "seed": non_negative_int(),
    "jitter": Rule((int,), "an integer from 0 to 16 (pixels; 0 = off)", minimum=0, maximum=16),
    "blur_sigma": Rule((int, float), "a number from 0 to 5 (pixels; 0 = off)", minimum=0, maximum=5),
}


def visualize(settings, artifacts=Artifacts(), progress=print):
    import keras

    from cifar.core.runtime import configure_tensorflow
    from cifar.figures.stimuli import kernels_figure, stimuli_figure
    from cifar.network.trained import load_trained_model
    from cifar.visualization import gradient_ascent

    model = load_trained_model(artifacts.model)
    configure_tensorflow()
    stats, classes = artifacts.load_stats(), artifacts.load_classes()
    started = time.perf_counter()
    progress("optimising the stimuli of every conv filter and class ...")
    layers, results = gradient_ascent.model_stimuli(model, len(classes), settings, artifacts.model)
    progress(f"optimised in {time.perf_counter() - started:.1f}s; drawing the grids")

    record = {"layers": {}}
    # a fresh folder replaces the old one whole: no figure of a layer the model no longer has stays
    with atomic_directory(artifacts.stimuli_dir) as stimuli_dir:
        for layer, (images, _, final) in zip(layers, results):
            rgb = gradient_ascent.image_values_to_rgb(images, stats["mean"], stats["std"])
            record["layers"][layer.name] = gradient_ascent.activation_record(final)
            title = f"Maximum stimuli of {layer.name} ({len(final)} filters)"
            save_figure(stimuli_dir / f"{layer.name}.png", stimuli_figure(rgb, final, title))
            progress(f"stimuli of {layer.name}: {len(final)} filters, {record['layers'][layer.name]['dead']} dead")
        images, _, final = results[-1]
        rgb = gradient_ascent.image_values_to_rgb(images, stats["mean"], stats["std"])
        record["classes"] = {name: round(float(v), 6) for name, v in zip(classes, final)}
        title = "Maximum stimuli of the class scores (before softmax)"
        save_figure(stimuli_dir / "classes.png", stimuli_figure(rgb, final, title, labels=classes))
    first_conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    save_figure(artifacts.kernels_figure, kernels_figure(np.asarray(first_conv.kernel)))
    write_json(artifacts.stimuli_record, record)
    progress(
        f"visualised {sum(r['filters'] for r in record['layers'].values())} filters of {len(layers)} layers "
        f"and {len(classes)} classes in {time.perf_counter() - started:.1f}s"
    )
    return record


def main(argv=None):
    cli.parser("stages.visualize", __doc__).parse_args(argv)
    visualize(load_params({"visualize": VISUALIZE})["visualize"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
