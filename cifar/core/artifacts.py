"""Every file the pipeline writes and reads between stages, in one table, and how to read it back.

Paths are relative to a workspace root (the repository, for DVC; a scratch folder, for tests);
OUTS are the ones dvc.yaml declares. Stages, tests and benchmarks name them through this table.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar.core.errors import PipelineError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")

# dvc.yaml's outs, exactly (tests/test_layout.py keeps the two equal), by the stage that writes them.
OUTS = {
    # fetch: the verified dataset, `raw_dataset` in it
    "raw_dir": "data/raw",
    # preprocess
    **{name: f"data/prepared/{name}.npy" for name in ARRAYS},
    "prepared_classes": "data/prepared/classes.json",
    "prepared_stats": "data/prepared/stats.json",  # mean and std of the normalised training pixels
    "prepared_input": "data/prepared/input.json",  # how pictures were fitted to 32x32: aspect, background
    "samples_figure": "reports/figures/samples.png",
    # train
    "model": "models/model.keras",
    "model_classes": "models/classes.json",  # for predict: the model itself knows no class names
    "model_input": "models/input.json",  # for predict: how to fit a picture as the training images were
    "train_reports": "reports/train",  # DVCLive's: per-epoch history, last metrics, what `auto` resolved
    # evaluate
    "metrics": "reports/metrics.json",
    "confusion_data": "reports/eval/confusion.csv",
    "confusion_figure": "reports/figures/confusion_matrix.png",
    "predictions_figure": "reports/figures/predictions.png",
    "reliability_data": "reports/eval/reliability.csv",  # per confidence bin: accuracy, confidence, images
    "per_class_accuracy_data": "reports/eval/per_class_accuracy.csv",
    "reliability_figure": "reports/figures/reliability.png",
    "per_class_accuracy_figure": "reports/figures/per_class_accuracy.png",
    "mistakes_figure": "reports/figures/mistakes.png",
    "gradcam_figure": "reports/figures/gradcam.png",  # over the prediction grid's images
    "gradcam_mistakes_figure": "reports/figures/gradcam_mistakes.png",
    # robustness
    "robustness_record": "reports/robustness.json",
    "robustness_data": "reports/robustness/accuracy.csv",  # accuracy per severity, a column per corruption
    "robustness_figure": "reports/figures/robustness.png",
    # export
    "saved_model": "models/export/saved_model",
    "tflite_float": "models/export/model.tflite",
    "tflite_int8": "models/export/model_int8.tflite",
    "export_classes": "models/export/classes.json",
    "export_input": "models/export/input.json",
    "export_record": "reports/export.json",  # each format's accuracy, agreement, size and latency
    # visualize
    "stimuli_record": "reports/stimuli.json",
    "stimuli_dir": "reports/figures/stimuli",
    "kernels_figure": "reports/figures/kernels.png",
}

# Paths inside those outs, and what is written outside DVC's pipeline.
OTHER = {
    "raw_dataset": "data/raw/dataset",  # the source archive, or a directory packed as an uncompressed tar
    "prepared_dir": "data/prepared",
    "export_dir": "models/export",
    "history_dir": "reports/train/plots/metrics",  # DVCLive's per-epoch TSV files: train/loss.tsv, ...
    "train_state": ".train_state",  # checkpoints of unfinished runs, one folder per run key; not tracked
    # the report command
    "report": "reports/report.md",
    "published_report": "reports/report.published.md",  # images uploaded and linked by URL (CI's comment)
    "plots_page_dir": "reports/plots",  # `dvc plots diff` drawn offline: its index.html
    "curves_figure": "reports/figures/training_curves.png",
}

PATHS = {**OUTS, **OTHER}


@dataclass(frozen=True)
class Artifacts:
    """Every path of PATHS as an attribute under `root`: Artifacts(root).model is root/models/model.keras."""

    root: Path = Path(".")

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def __getattr__(self, name):
        try:
            return self.root / PATHS[name]
        except KeyError:
            raise AttributeError(f"no artifact {name!r}; known: {', '.join(PATHS)}") from None

    def prepared_array(self, name):
        return self.root / OUTS[name]

    # loaders
    def load_prepared(self):
        """({name: array} of ARRAYS, class names) as preprocess wrote them."""
        arrays = {name: _load_npy(self.prepared_array(name)) for name in ARRAYS}
        return arrays, self.load_classes(self.prepared_classes)

    def load_classes(self, path=None):
        return _load_json(path or self.prepared_classes)

    def load_stats(self):
        return _load_json(self.prepared_stats)

    def load_input(self, path=None):
        """How pictures were fitted to 32x32 ({"aspect", "background"}); {} where prepared data predate it."""
        path = Path(path or self.prepared_input)
        return _load_json(path) if path.exists() else {}


def _load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read the prepared array ({err}); run `dvc repro preprocess`") from err


def _load_json(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"{path}: cannot read ({err})") from err
