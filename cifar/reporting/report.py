"""reports/report.md: this run's metrics and figures beside a base revision's, and the plots page.

Image paths are relative to reports/, so the file renders in a clone and on a code host.
"""

import csv
import io
import json

from cifar.core.artifacts import Artifacts
from cifar.core.atomic import save_figure, write_text
from cifar.core.errors import PipelineError
from cifar.reporting.plots_page import write_plots_html
from cifar.reporting.revisions import dvc, git_show, revision_exists
from cifar.reporting.tables import flatten, metrics_table, params_table, per_class_table

HISTORY_KEYS = ("train/loss.tsv", "eval/loss.tsv", "train/accuracy.tsv", "eval/accuracy.tsv")


def read_history(text):
    """dvclive's TSV (step<TAB>value) -> list of floats."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    return [float(row[-1]) for row in rows[1:] if row]


def base_results(base, artifacts):
    """(flattened metrics or None, params diff, per-epoch history) of revision `base`."""
    text = git_show(base, artifacts.metrics.as_posix())
    metrics = flatten(json.loads(text)) if text else None
    params_diff = json.loads(dvc("params", "diff", base, "--json") or "{}")
    history = {}
    for key in HISTORY_KEYS:
        text = git_show(base, (artifacts.history_dir / key).as_posix())
        if text:
            history[key] = read_history(text)
    return metrics, params_diff, history


def build_report(base="main", artifacts=Artifacts()):
    """Write the report and the plots page (run in the repository); returns the report's path."""
    from cifar.figures.curves import curves_figure

    if not artifacts.metrics.is_file():
        raise PipelineError(f"{artifacts.metrics}: not found; run `dvc repro` first")
    current = flatten(json.loads(artifacts.metrics.read_text()))
    has_base = bool(base) and revision_exists(base)
    base_metrics, params_diff, base_history = base_results(base, artifacts) if has_base else (None, {}, {})
    history = {
        key: read_history((artifacts.history_dir / key).read_text())
        for key in HISTORY_KEYS
        if (artifacts.history_dir / key).is_file()
    }
    save_figure(artifacts.curves_figure, curves_figure(history, base_history, base or "base"))
    write_plots_html(base if has_base else None, artifacts.plots_page_dir)

    def image(title, path):
        return f"![{title}]({path.relative_to(artifacts.root / 'reports').as_posix()})" if path.exists() else ""

    stimuli = json.loads(artifacts.stimuli_record.read_text()) if artifacts.stimuli_record.is_file() else {}
    lines = ["# CIFAR-10 pipeline report", ""]
    lines.append(f"Compared with `{base}`." if has_base else f"No base revision `{base}` found: no comparison.")
    lines += ["", "## Test metrics", "", metrics_table(current, base_metrics), ""]
    if has_base:
        lines += ["## Params that differ from the base", "", params_table(params_diff), ""]
    lines += ["## Per-class figures", "", per_class_table(current), ""]
    lines += ["## Training curves", "", image("training curves", artifacts.curves_figure), ""]
    lines += ["## Confusion matrix", "", image("confusion matrix", artifacts.confusion_figure), ""]
    lines += ["## Predictions", "", image("predictions", artifacts.predictions_figure), ""]
    if stimuli:
        lines += ["## Maximum stimuli", "", "| layer | filters | dead | mean activation |", "|---|---:|---:|---:|"]
        lines += [
            f"| {name} | {r['filters']} | {r['dead']} | {r['mean_activation']:.4f} |"
            for name, r in stimuli.get("layers", {}).items()
        ]
        lines.append("")
        for name in [*stimuli.get("layers", {}), "classes"]:
            lines += [f"### {name}", "", image(name, artifacts.stimuli_dir / f"{name}.png"), ""]
        lines += ["### First-layer kernels", "", image("kernels", artifacts.kernels_figure), ""]
    lines += ["Interactive plots (both runs on one chart): `reports/plots/index.html`.", ""]
    write_text(artifacts.report, "\n".join(lines))
    return artifacts.report
