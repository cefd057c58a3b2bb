"""Every file the pipeline writes and reads between stages, and how to read it back.

Paths are relative to a workspace root (the repository, for DVC; a scratch folder, for tests),
and they are the ones dvc.yaml declares.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cifar.core.errors import PipelineError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class Artifacts:
    root: Path = Path(".")

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    # fetch
    @property
    def raw_dir(self):
        return self.root / "data/raw"

    @property
    def raw_dataset(self):
        """The verified dataset: the source archive, or a directory packed as an uncompressed tar."""
        return self.raw_dir / "dataset"

    # preprocess
    @property
    def prepared_dir(self):
        return self.root / "data/prepared"

    def prepared_array(self, name):
        return self.prepared_dir / f"{name}.npy"

    @property
    def prepared_classes(self):
        return self.prepared_dir / "classes.json"

    @property
    def prepared_stats(self):
        """Mean and std of the normalised training pixels (visualize shows stimuli at this contrast)."""
        return self.prepared_dir / "stats.json"

    @property
    def samples_figure(self):
        return self.root / "reports/figures/samples.png"

    # train
    @property
    def model(self):
        return self.root / "models/model.keras"

    @property
    def model_classes(self):
        """The class names beside the model, for predict: the model itself knows none."""
        return self.root / "models/classes.json"

    @property
    def train_reports(self):
        """DVCLive's folder: per-epoch history, last-epoch metrics, the settings `auto` resolved."""
        return self.root / "reports/train"

    @property
    def train_state(self):
        """Checkpoints of unfinished runs, one folder per run key; neither a DVC output nor tracked by git."""
        return self.root / ".train_state"

    # evaluate
    @property
    def metrics(self):
        return self.root / "reports/metrics.json"

    @property
    def confusion_data(self):
        return self.root / "reports/eval/confusion.csv"

    @property
    def confusion_figure(self):
        return self.root / "reports/figures/confusion_matrix.png"

    @property
    def predictions_figure(self):
        return self.root / "reports/figures/predictions.png"

    @property
    def reliability_data(self):
        """Per confidence bin: its centre, accuracy, mean confidence and images (the reliability diagram)."""
        return self.root / "reports/eval/reliability.csv"

    @property
    def per_class_accuracy_data(self):
        return self.root / "reports/eval/per_class_accuracy.csv"

    @property
    def reliability_figure(self):
        return self.root / "reports/figures/reliability.png"

    @property
    def per_class_accuracy_figure(self):
        return self.root / "reports/figures/per_class_accuracy.png"

    @property
    def mistakes_figure(self):
        return self.root / "reports/figures/mistakes.png"

    @property
    def gradcam_figure(self):
        """Grad-CAM over the prediction grid's images."""
        return self.root / "reports/figures/gradcam.png"

    @property
    def gradcam_mistakes_figure(self):
        return self.root / "reports/figures/gradcam_mistakes.png"

    # robustness
    @property
    def robustness_record(self):
        return self.root / "reports/robustness.json"

    @property
    def robustness_data(self):
        """Accuracy per severity, a column per corruption (the plot of accuracy against severity)."""
        return self.root / "reports/robustness/accuracy.csv"

    @property
    def robustness_figure(self):
        return self.root / "reports/figures/robustness.png"

    # export
    @property
    def export_dir(self):
        return self.root / "models/export"

    @property
    def saved_model(self):
        return self.export_dir / "saved_model"

    @property
    def tflite_float(self):
        return self.export_dir / "model.tflite"

    @property
    def tflite_int8(self):
        return self.export_dir / "model_int8.tflite"

    @property
    def export_record(self):
        """Each format's test accuracy, file size and single-image latency."""
        return self.root / "reports/export.json"

    # visualize
    @property
    def stimuli_dir(self):
        return self.root / "reports/figures/stimuli"

    @property
    def kernels_figure(self):
        return self.root / "reports/figures/kernels.png"

    @property
    def stimuli_record(self):
        return self.root / "reports/stimuli.json"

    # the report command
    @property
    def report(self):
        return self.root / "reports/report.md"

    @property
    def published_report(self):
        """report.md with its images uploaded and linked by URL: for a pull-request comment or a job summary."""
        return self.root / "reports/report.published.md"

    @property
    def plots_page_dir(self):
        """`dvc plots diff` drawn offline: its index.html."""
        return self.root / "reports/plots"

    @property
    def curves_figure(self):
        return self.root / "reports/figures/training_curves.png"

    @property
    def history_dir(self):
        """DVCLive's per-epoch TSV files: train/loss.tsv, eval/accuracy.tsv, ..."""
        return self.train_reports / "plots/metrics"

    # loaders
    def load_prepared(self):
        """({name: array} of ARRAYS, class names) as preprocess wrote them."""
        arrays = {name: _load_npy(self.prepared_array(name)) for name in ARRAYS}
        return arrays, self.load_classes(self.prepared_classes)

    def load_classes(self, path=None):
        return _load_json(path or self.prepared_classes)

    def load_stats(self):
        return _load_json(self.prepared_stats)


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
