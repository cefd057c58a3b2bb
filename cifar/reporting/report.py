"""reports/report.md: this run's metrics and figures beside a base revision's, and the plots page.

Image paths are relative to reports/, so the file renders in a clone and on a code host's file
view; cifar/reporting/publish.py makes the copy whose images show in a pull-request comment.
"""

import csv
import io
import json

from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, write_text
from cifar.core.errors import PipelineError
from cifar.reporting.plots_page import write_plots_html
from cifar.reporting.revisions import dvc, git_show, revision_exists, short_hash
from cifar.reporting.tables import (
    export_table,
    flatten,
    metrics_table,
    params_table,
    per_class_table,
    robustness_table,
    stimuli_table,
)

HISTORY_KEYS = ("train/loss.tsv", "test/loss.tsv", "train/accuracy.tsv", "test/accuracy.tsv")
# The per-epoch test-set curves' folder in revisions made before it was named test/ (DVCLive's default)
FORMER_TEST_FOLDER = "eval/"


def read_history(text):
    """dvclive's TSV (step<TAB>value) -> list of floats."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    return [float(row[-1]) for row in rows[1:] if row]


def read_json_at(rev, path):
    text = git_show(rev, path.as_posix())
    return flatten(json.loads(text)) if text else None


def base_results(base, artifacts):
    """{'metrics', 'stimuli', 'params', 'history'} of revision `base`; metrics None when it has no results."""
    return {
        "metrics": read_json_at(base, artifacts.metrics),
        "stimuli": read_json_at(base, artifacts.stimuli_record),
        "robustness": read_json_at(base, artifacts.robustness_record),
        "export": read_json_at(base, artifacts.export_record),
        "params": json.loads(dvc("params", "diff", base, "--json") or "{}"),
        "history": {key: read_history(text) for key in HISTORY_KEYS if (text := history_at(base, key, artifacts))},
    }


def history_at(rev, key, artifacts):
    """The text of history file `key` at revision `rev`, under its former name there if need be; or None."""
    found = git_show(rev, (artifacts.history_dir / key).as_posix())
    if found is None and key.startswith("test/"):
        found = git_show(rev, (artifacts.history_dir / FORMER_TEST_FOLDER / key.removeprefix("test/")).as_posix())
    return found


def base_sentence(base, has_base, results):
    """One sentence saying what the tables compare with."""
    if not has_base:
        return f"No base revision `{base}` found: this run's numbers and figures are shown alone."
    if results["metrics"] is None:
        return (
            f"The base `{base}` ({short_hash(base)}) has no results yet (no `reports/metrics.json` there): "
            "this run's numbers and figures are shown alone."
        )
    return f"Compared with the base `{base}` ({short_hash(base)})."


def build_report(base="main", artifacts=Artifacts()):
    """Write the report and the plots page (run in the repository); returns the report's path."""
    from cifar.figures.curves import curves_figure

    if not artifacts.metrics.is_file():
        raise PipelineError(f"{artifacts.metrics}: not found; run `dvc repro` first")
    current = flatten(json.loads(artifacts.metrics.read_text()))
    has_base = bool(base) and revision_exists(base)
    empty = {"metrics": None, "stimuli": None, "robustness": None, "export": None, "params": {}, "history": {}}
    results = base_results(base, artifacts) if has_base else empty
    history = {
        key: read_history((artifacts.history_dir / key).read_text())
        for key in HISTORY_KEYS
        if (artifacts.history_dir / key).is_file()
    }
    save_figure(artifacts.curves_figure, curves_figure(history, results["history"], base or "base"))
    write_plots_html(base if has_base else None, artifacts.plots_page_dir)

    def image(title, path):
        return f"![{title}]({path.relative_to(artifacts.root / 'reports').as_posix()})" if path.exists() else ""

    stimuli = read_if_there(artifacts.stimuli_record)
    robustness, exported = read_if_there(artifacts.robustness_record), read_if_there(artifacts.export_record)
    lines = ["# CIFAR pipeline report", "", base_sentence(base, has_base, results), ""]
    lines += ["## Test metrics", "", metrics_table(current, results["metrics"]), ""]
    if has_base:
        lines += ["## Params that differ from the base", "", params_table(results["params"]), ""]
    lines += ["## Per class", "", per_class_table(current, results["metrics"]), ""]
    lines += ["## Training curves", "", image("training curves", artifacts.curves_figure), ""]
    lines += ["## Confusion matrix", "", image("confusion matrix", artifacts.confusion_figure), ""]
    lines += ["## Predictions", "", image("predictions", artifacts.predictions_figure), ""]
    lines += ["## Calibration", "", "Expected calibration error (15 bins) and NLL are in the test metrics above.", ""]
    lines += [image("reliability diagram", artifacts.reliability_figure), ""]
    lines += ["## Failure modes", "", image("accuracy per class", artifacts.per_class_accuracy_figure), ""]
    lines += ["The most confident mistakes:", "", image("mistakes", artifacts.mistakes_figure), ""]
    lines += ["## Grad-CAM", "", "Where the evidence for the predicted class lies, over the prediction grid:", ""]
    lines += [image("Grad-CAM", artifacts.gradcam_figure), "", "and over the mistakes:", ""]
    lines += [image("Grad-CAM of the mistakes", artifacts.gradcam_mistakes_figure), ""]
    if robustness:
        lines += ["## Robustness: accuracy under common corruptions", ""]
        if robustness.get("source"):
            lines += [
                f"The published set `{robustness['source']}`, {robustness['images_per_severity']} images per severity.",
                "",
            ]
        lines += [robustness_table(flatten(robustness), results["robustness"]), ""]
        lines += [image("accuracy against severity", artifacts.robustness_figure), ""]
    if exported:
        lines += ["## Exported models", "", f"Latency measured on: {exported.get('cpu', 'unknown CPU')}.", ""]
        lines += [export_table(flatten(exported), results["export"]), ""]
    if stimuli:
        lines += ["## Maximum stimuli", "", stimuli_table(flatten(stimuli), results["stimuli"]), ""]
        for name in [*stimuli.get("layers", {}), "classes"]:
            lines += [f"### {name}", "", image(name, artifacts.stimuli_dir / f"{name}.png"), ""]
        lines += ["### First-layer kernels", "", image("kernels", artifacts.kernels_figure), ""]
    lines += ["Interactive plots (both runs on one chart): `reports/plots/index.html`.", ""]
    write_text(artifacts.report, "\n".join(lines))
    return artifacts.report


def read_if_there(path):
    return json.loads(path.read_text()) if path.is_file() else {}
