"""Stage visualize: maximum stimuli of every conv filter and every class, and the first-layer kernels.

Writes reports/figures/stimuli/<layer>.png (a tile per filter, titled with its
index and final activation; dead filters, whose activation stays <= 0, are
marked rather than hidden), reports/figures/stimuli/classes.png,
reports/figures/kernels.png, and reports/stimuli.json with every activation.
"""

import json
import sys
import time
from pathlib import Path


import numpy as np

from stages.atomic import save_figure, write_json
from stages.errors import PipelineError, run_stage
from stages.models import MODEL_FILE
from stages.params import load_section
from stages.preprocess import PREPARED_DIR

STIMULI_DIR = Path("reports/figures/stimuli")
KERNELS_FIGURE = Path("reports/figures/kernels.png")
STIMULI_JSON = Path("reports/stimuli.json")


def mosaic(images, cols, row_gap=2, col_gap=2, fill=255):
    """Tile equally sized images into one array, `cols` per row, with gaps between (and below the last row)."""
    count, height, width = images.shape[:3]
    rows = int(np.ceil(count / cols))
    step_y, step_x = height + row_gap, width + col_gap
    out = np.full((rows * step_y, cols * step_x - col_gap, *images.shape[3:]), fill, images.dtype)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        out[r * step_y : r * step_y + height, c * step_x : c * step_x + width] = image
    return out


def stimuli_figure(images, activations, title, labels=None, cols=8):
    """Grid of stimuli, each titled with its index (or label) and final activation.

    Dead filters (activation <= 0) are shown as a grey tile marked in red. One
    mosaic image with text labels: many small subplots take seconds to lay out.
    """
    from stages.figures import plt

    images = np.array(images)
    dead = np.asarray(activations) <= 0
    images[dead] = 128
    rows = int(np.ceil(len(images) / cols))
    size, col_gap, row_gap = images.shape[1], 8, 12  # the row gap holds the labels
    fig = plt.figure(figsize=(1.7 * cols, 1.7 * rows * (size + row_gap) / (size + col_gap) + 0.5))
    ax = fig.add_axes((0, 0, 1, 1 - 0.5 / fig.get_figheight()))
    ax.imshow(mosaic(images, cols, row_gap, col_gap), interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=12, y=1 - 0.15 / fig.get_figheight())
    for i, activation in enumerate(activations):
        r, c = divmod(i, cols)
        name = labels[i] if labels else f"#{i}"
        text = f"{name} dead ({activation:.2g})" if dead[i] else f"{name}: {activation:.3g}"
        ax.text(
            c * (size + col_gap) + size / 2,
            r * (size + row_gap) + size + 1,
            text,
            ha="center",
            va="top",
            fontsize=8,
            color="tab:red" if dead[i] else "black",
        )
    return fig


def kernels_figure(kernel):
    """The first conv layer's 3x3x3 kernels as RGB tiles, each scaled to its own min..max."""
    from stages.figures import plt

    count = kernel.shape[-1]
    cols = 8
    rows = int(np.ceil(count / cols))
    fig = plt.figure(figsize=(cols * 1.2, rows * 1.4 + 0.5))
    fig.suptitle("First conv layer kernels (RGB)")
    for i in range(count):
        tile = kernel[..., i]
        tile = (tile - tile.min()) / (np.ptp(tile) + 1e-12)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.axis("off")
        ax.imshow(tile, interpolation="nearest")
        ax.set_title(f"#{i}", fontsize=8)
    fig.tight_layout()
    return fig


def layer_record(final):
    return {
        "filters": int(len(final)),
        "dead": int(np.sum(final <= 0)),
        "mean_activation": round(float(np.mean(final)), 6),
        "activations": {str(i): round(float(v), 6) for i, v in enumerate(final)},
    }


def visualize(params, model_file=MODEL_FILE, prepared_dir=PREPARED_DIR, reports=Path("."), progress=print):
    import keras

    from stages import stimuli

    from stages.models import load_trained_model
    from stages.runtime import configure_tensorflow

    model = load_trained_model(model_file)
    configure_tensorflow()
    stats = json.loads((Path(prepared_dir) / "stats.json").read_text())
    classes = json.loads((Path(prepared_dir) / "classes.json").read_text())
    layers = stimuli.conv_activation_layers(model)
    if not layers:
        raise PipelineError(f"{model_file}: the model has no convolutional activation layers to visualise")
    image = stimuli.normalized_input(model)
    rng = np.random.default_rng(params["seed"])
    options = dict(
        iterations=params["iterations"],
        step=params["step"],
        jitter=params["jitter"],
        blur_sigma=params["blur_sigma"],
        seed=params["seed"],
    )
    reports = Path(reports)
    record = {"layers": {}}
    started = time.perf_counter()
    # Every conv layer and the class scores in one compiled loop; starting noise drawn in that order.
    submodels = [keras.Model(image, layer.output) for layer in layers]
    submodels.append(keras.Model(image, stimuli.class_score_tensor(model)))
    starts = [stimuli.starting_noise(layer.output.shape[-1], rng, stimuli.CONV_NOISE_SCALE) for layer in layers]
    starts.append(stimuli.starting_noise(len(classes), rng, stimuli.DENSE_NOISE_SCALE))
    progress(f"optimising stimuli of {sum(len(start) for start in starts)} filters and classes ...")
    results = stimuli.maximum_stimuli(submodels, starts, **options)
    progress(f"optimised in {time.perf_counter() - started:.1f}s; drawing the grids")

    for layer, (images, _, final) in zip(layers, results):
        count = len(final)
        rgb = stimuli.image_values_to_rgb(images, stats["mean"], stats["std"])
        record["layers"][layer.name] = layer_record(final)
        save_figure(
            reports / STIMULI_DIR / f"{layer.name}.png",
            stimuli_figure(rgb, final, f"Maximum stimuli of {layer.name} ({count} filters)"),
        )
        progress(f"stimuli of {layer.name}: {count} filters, {record['layers'][layer.name]['dead']} dead")

    images, _, final = results[-1]
    rgb = stimuli.image_values_to_rgb(images, stats["mean"], stats["std"])
    record["classes"] = {name: round(float(v), 6) for name, v in zip(classes, final)}
    save_figure(
        reports / STIMULI_DIR / "classes.png",
        stimuli_figure(rgb, final, "Maximum stimuli of the class scores (before softmax)", labels=classes),
    )
    first_conv = next(layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D))
    save_figure(reports / KERNELS_FIGURE, kernels_figure(np.asarray(first_conv.kernel)))
    write_json(reports / STIMULI_JSON, record)
    progress(
        f"visualised {sum(r['filters'] for r in record['layers'].values())} filters of {len(layers)} layers "
        f"and {len(classes)} classes in {time.perf_counter() - started:.1f}s"
    )
    return record


def main(argv=None):
    visualize(load_section("visualize"))


if __name__ == "__main__":
    sys.exit(run_stage(main))
