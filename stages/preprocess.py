"""Stage preprocess: decode the fetched dataset into uint8 .npy arrays.

Images stay uint8 (a quarter of float32's memory); the model normalises them
itself (x/255 - 0.5, as the tutorial does), so the saved model takes raw pixels.
"""

import sys
from pathlib import Path

import numpy as np

from stages.atomic import save_figure, save_npy, write_json
from stages.datasets import read_dataset
from stages.errors import PipelineError, run_stage
from stages.fetch import RAW_ARCHIVE
from stages.params import load_section

PREPARED_DIR = Path("data/prepared")
SAMPLES_FIGURE = Path("reports/figures/samples.png")


def balanced_subset(labels, max_images, rng):
    """Indices of at most `max_images` items, spread evenly over the classes, in original order.

    Each class gets max_images // classes items; the remainder goes one each to
    randomly chosen classes. Classes with too few items give what they have.
    """
    if max_images is None or max_images >= len(labels):
        return np.arange(len(labels))
    classes = np.unique(labels)
    quota = np.full(len(classes), max_images // len(classes))
    quota[rng.choice(len(classes), size=max_images % len(classes), replace=False)] += 1
    chosen = []
    for cls, count in zip(classes, quota):
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(members, size=min(count, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def normalized_stats(images):
    """Mean and std of x/255 - 0.5 over all pixels: the tutorial's np.mean(x_train2), np.std(x_train2).

    Exact integer sums over chunks, with no float copy of the whole dataset.
    """
    total = squares = 0
    for start in range(0, len(images), 4096):
        chunk = images[start : start + 4096].astype(np.uint32)
        total += int(chunk.sum(dtype=np.uint64))
        squares += int(np.square(chunk).sum(dtype=np.uint64))
    count = images.size
    mean = total / count
    std = np.sqrt(max(squares / count - mean**2, 0.0))
    return {"mean": float(mean / 255 - 0.5), "std": float(std / 255)}


def preprocess(raw, out_dir, params, samples_figure=SAMPLES_FIGURE, progress=print):
    dataset = read_dataset(raw, progress)
    rng = np.random.default_rng(params["seed"])
    train = balanced_subset(dataset.y_train, params["max_train_images"], rng)
    test = balanced_subset(dataset.y_test, params["max_test_images"], rng)
    arrays = {
        "x_train": dataset.x_train[train],
        "y_train": dataset.y_train[train],
        "x_test": dataset.x_test[test],
        "y_test": dataset.y_test[test],
    }
    if len(arrays["x_train"]) == 0 or len(arrays["x_test"]) == 0:
        raise PipelineError(f"{raw}: the dataset has no train or no test images")
    out_dir = Path(out_dir)
    for name, array in arrays.items():
        save_npy(out_dir / f"{name}.npy", array)
    write_json(out_dir / "classes.json", dataset.classes)
    write_json(out_dir / "stats.json", normalized_stats(arrays["x_train"]))
    from stages.figures import samples_figure as make_samples  # matplotlib import costs ~0.5 s

    save_figure(samples_figure, make_samples(arrays["x_train"], arrays["y_train"], dataset.classes, rng))
    progress(f"prepared {len(train)} train and {len(test)} test images of {len(dataset.classes)} classes in {out_dir}")
    return arrays


def main(argv=None):
    params = load_section("preprocess")
    preprocess(RAW_ARCHIVE, PREPARED_DIR, params)


if __name__ == "__main__":
    sys.exit(run_stage(main))
