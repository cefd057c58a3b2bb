"""What the pipeline's figures show, read from the matplotlib Figure objects the stages save.

`capture_figures` records every figure as it is saved, by the path it is saved under; the other
functions read an axes' content back: its images, titles, texts, bars, lines and tick labels.
"""

import re
from pathlib import Path

import matplotlib.figure
import numpy as np

# cifar.core.atomic saves to ".<name>.<random>.tmp<suffix>" beside the target, then renames it; a folder
# written whole is filled as ".<name>.tmp-<random>" beside it, then renamed
_ATOMIC_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[^.]+\.tmp(\.[^.]*)?$")
_ATOMIC_FOLDER = re.compile(r"^\.(?P<name>.+)\.tmp-[^/]+$")


def target_of(path):
    """The path a figure saved to `path` ends up under: the target of an atomic write's temporary file, in
    the target of an atomic folder's temporary one."""
    path = Path(path)
    match = _ATOMIC_TEMPORARY.match(path.name)
    name = match["name"] if match else path.name
    folders = [(m["name"] if (m := _ATOMIC_FOLDER.match(part)) else part) for part in path.parent.parts]
    return Path(*folders, name) if folders else Path(name)


def capture_figures(monkeypatch):
    """{target path: Figure}, filled by every `Figure.savefig` from now on (the figure is still saved).

    Recorded from the Figure object the code saves, so a test sees what the PNG shows, not what
    the code meant to draw. A path saved twice keeps its last figure."""
    seen = {}
    save = matplotlib.figure.Figure.savefig

    def recording_savefig(fig, fname, *args, **kwargs):
        seen[target_of(fname).resolve()] = fig
        return save(fig, fname, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", recording_savefig)
    return seen


def image_axes(fig):
    """The axes of `fig` that show an image, in the order they were added (a grid's reading order)."""
    return [ax for ax in fig.axes if ax.images]


def shown_image(ax, index=0):
    """The array of image `index` of `ax`, as matplotlib holds it."""
    return np.asarray(ax.images[index].get_array())


def grid_cells(fig):
    """[(image, title)] of every image cell of a grid figure, in reading order."""
    return [(shown_image(ax), ax.get_title()) for ax in image_axes(fig)]


def texts(ax):
    """[(x, y, text)] of the text artists of `ax`, in data coordinates."""
    return [(*text.get_position(), text.get_text()) for text in ax.texts]


def bars(ax):
    """[(x, y, width, height)] of the bars (rectangle patches) of `ax`, in drawing order."""
    return [(bar.get_x(), bar.get_y(), bar.get_width(), bar.get_height()) for bar in ax.patches]


def tick_labels(ax, axis):
    """{tick position: label text} of the x or y axis of `ax`, for the ticks that have a label."""
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    positions = ax.get_xticks() if axis == "x" else ax.get_yticks()
    return {float(position): tick.get_text() for position, tick in zip(positions, ticks) if tick.get_text()}


def lines(ax):
    """{legend label: (x data, y data)} of the lines of `ax`."""
    return {
        line.get_label(): (np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float))
        for line in ax.get_lines()
    }


def index_by_content(images):
    """{image bytes: index} of a batch of distinct images, to find which one a figure shows."""
    found = {image.tobytes(): i for i, image in enumerate(images)}
    assert len(found) == len(images), "the images are not distinct: a figure's image would be ambiguous"
    return found


def which_images(shown, images):
    """Indices into `images` of each array of `shown` (each must be one of them, unchanged)."""
    index = index_by_content(images)
    found = [
        index.get(np.ascontiguousarray(image).tobytes())
        if image.dtype == images.dtype and image.shape == images.shape[1:]
        else None
        for image in shown
    ]
    assert None not in found, "a figure shows an image that is not one of the given images"
    return found
