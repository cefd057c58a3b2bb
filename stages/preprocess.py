"""Stage preprocess: decode the fetched dataset into uint8 arrays, class-balanced subsets if asked.

Reads data/raw/dataset (a CIFAR-10 Python or binary archive, a CIFAR-100 Python archive, or image
folders train/<class>/*, test/<class>/*; as zip, tar or folder) and params.yaml's `preprocess`
section. Writes data/prepared/{x,y}_{train,test}.npy, classes.json, stats.json (mean and std of
the normalised training pixels), input.json (preprocess.aspect and .background: how pictures were
fitted to 32x32, which predict repeats) and reports/figures/samples.png.
"""

import sys
from dataclasses import asdict

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, save_npy, write_json
from cifar.core.params import load_params
from cifar.data.datasets import read_dataset
from cifar.data.images import Fitting
from cifar.data.params import PREPROCESS
from cifar.data.prepare import normalized_stats, subsets


def preprocess(settings, artifacts=Artifacts(), progress=print):
    fitting = Fitting(settings["aspect"], settings["background"])
    dataset = read_dataset(artifacts.raw_dataset, settings["labels"], progress, fitting)
    rng = np.random.default_rng(settings["seed"])
    arrays = subsets(dataset, settings, rng)
    for name, array in arrays.items():
        save_npy(artifacts.prepared_array(name), array)
    write_json(artifacts.prepared_classes, dataset.classes)
    write_json(artifacts.prepared_stats, normalized_stats(arrays["x_train"]))
    write_json(artifacts.prepared_input, asdict(fitting))  # train keeps it beside the model, for predict
    from cifar.figures.grids import samples_figure  # matplotlib's import costs ~0.5 s

    save_figure(artifacts.samples_figure, samples_figure(arrays["x_train"], arrays["y_train"], dataset.classes, rng))
    progress(
        f"prepared {len(arrays['y_train'])} train and {len(arrays['y_test'])} test images "
        f"of {len(dataset.classes)} classes in {artifacts.prepared_dir}"
    )
    return arrays


def main(argv=None):
    cli.parser("stages.preprocess", __doc__).parse_args(argv)
    preprocess(load_params({"preprocess": PREPROCESS})["preprocess"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
