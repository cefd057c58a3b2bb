"""Stage robustness: accuracy under common corruptions, in the spirit of CIFAR-10-C.

Reads the model, the prepared test set and params.yaml's `robustness` section: a subset of the
test images (`max_images`, chosen by `seed`) is corrupted deterministically by code in six ways,
each at five severities (cifar/robustness/corruptions.py says how they relate to CIFAR-10-C's),
and classified without test-time augmentation: the model's own robustness. Writes
reports/robustness.json (clean accuracy, the mean corruption accuracy over all 30, each one),
reports/robustness/accuracy.csv (a column per corruption, a row per severity) for DVC's plot of
accuracy against severity, and reports/figures/robustness.png.
"""

import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, write_json, write_text
from cifar.core.params import ListRule, Rule, load_params, non_negative_int, positive_int

# params.yaml's `robustness` section (each key is documented there): five values per corruption
SEVERITIES = 5


def levels(kinds, description, minimum, maximum):
    item = Rule(kinds, description, minimum=minimum, maximum=maximum)
    return ListRule(item, SEVERITIES, f"a list of {SEVERITIES} values, each {description}")


ROBUSTNESS = {
    "max_images": positive_int("null (the whole test set) or an integer >= 1", nullable=True),
    "seed": non_negative_int(),
    "gaussian_noise": levels((int, float), "a noise sigma from 0 to 1", 0, 1),
    "defocus_blur": levels((int, float), "a disk radius from 0 to 8 pixels", 0, 8),
    "defocus_blur_smoothing": levels((int, float), "a Gaussian sigma from 0.01 to 2 pixels", 0.01, 2),
    "contrast": levels((int, float), "a contrast factor from 0 to 1", 0, 1),
    "brightness": levels((int, float), "an added brightness from 0 to 1", 0, 1),
    "jpeg_compression": levels((int,), "a JPEG quality from 1 to 95", 1, 95),
    "pixelate": levels((int, float), "a size fraction from 0.05 to 1", 0.05, 1),
}


def robustness(settings, artifacts=Artifacts(), progress=print):
    from cifar.evaluation.metrics import csv_text
    from cifar.figures.evaluation import robustness_figure
    from cifar.network.trained import load_trained_model
    from cifar.robustness.evaluation import corruption_accuracy, robustness_record, test_subset

    model = load_trained_model(artifacts.model)
    arrays, _ = artifacts.load_prepared()
    chosen = test_subset(arrays["y_test"], settings["max_images"], settings["seed"])
    images, labels = arrays["x_test"][chosen], arrays["y_test"][chosen]
    progress(f"corrupting {len(images)} test images 6 ways at {SEVERITIES} severities ...")
    clean, results = corruption_accuracy(
        lambda batch: model.predict(batch, batch_size=256, verbose=0), images, labels, settings, progress
    )
    record = robustness_record(clean, results)
    write_json(artifacts.robustness_record, record)
    severities = list(range(1, SEVERITIES + 1))
    rows = [[severity, *(results[name][severity - 1] for name in results)] for severity in severities]
    write_text(artifacts.robustness_data, csv_text(["severity", *results], rows))
    save_figure(artifacts.robustness_figure, robustness_figure(severities, results, clean))
    progress(f"mean corruption accuracy {record['mean_corruption_accuracy']:.4f} (clean {clean:.4f})")
    return record


def main(argv=None):
    cli.parser("stages.robustness", __doc__).parse_args(argv)
    robustness(load_params({"robustness": ROBUSTNESS})["robustness"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
