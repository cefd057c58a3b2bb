"""Grids of maximum stimuli and the first layer's kernels."""

import numpy as np

from cifar.figures import plt


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
