"""Write reports/report.md and the `dvc plots` HTML page, with the diff against a base revision.

    python -m stages.report [--base main]

report.md holds the metrics table (with the base's values and the change), the
params that differ, the training curves, the confusion matrix, the prediction
grid and the stimuli grids, with relative paths so it renders on a code host.
reports/plots/index.html is `dvc plots diff <base>` drawn with a template that
embeds Vega, so the page draws offline too.
"""

import argparse
import csv
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from stages.atomic import save_figure, write_text
from stages.errors import PipelineError, run_stage

REPORTS = Path("reports")
REPORT_FILE = REPORTS / "report.md"
PLOTS_DIR = REPORTS / "plots"
CURVES_FIGURE = REPORTS / "figures/training_curves.png"
HISTORY_DIR = REPORTS / "train/plots/metrics"
VEGA_DIR = Path(__file__).parent / "vendor" / "vega"
HISTORY_KEYS = ("train/loss.tsv", "eval/loss.tsv", "train/accuracy.tsv", "eval/accuracy.tsv")
HEADLINE = ["accuracy", "loss", "macro.precision", "macro.recall", "macro.f1-score"]


def dvc(*args):
    """Run a dvc command in the current repo; return its stdout (PipelineError on failure)."""
    command = [str(Path(sys.executable).parent / "dvc"), *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PipelineError(f"dvc {' '.join(args)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout


def revision_exists(rev):
    return (
        subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], capture_output=True).returncode
        == 0
    )


def git_show(rev, path):
    """A file's text at a revision, or None."""
    result = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else None


def flatten(data, prefix=""):
    out = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def change(old, new):
    if isinstance(old, (int, float)) and isinstance(new, (int, float)):
        return f"{new - old:+.4f}"
    return ""


def metrics_table(current, base):
    rows = ["| metric | this run | base | change |", "|---|---:|---:|---:|"]
    for name in HEADLINE:
        new, old = current.get(name), (base or {}).get(name)
        rows.append(f"| {name} | {fmt(new)} | {fmt(old)} | {change(old, new)} |")
    return "\n".join(rows)


def per_class_table(current):
    classes = sorted(
        {key.split(".")[1] for key in current if key.startswith("per_class.")},
        key=lambda c: list(current).index(f"per_class.{c}.precision"),
    )
    rows = ["| class | precision | recall | F1 |", "|---|---:|---:|---:|"]
    for name in classes:
        rows.append(
            f"| {name} | "
            + " | ".join(fmt(current[f"per_class.{name}.{k}"]) for k in ("precision", "recall", "f1-score"))
            + " |"
        )
    return "\n".join(rows)


def params_table(diff):
    changed = diff.get("params.yaml", {})
    if not changed:
        return "No params differ from the base."
    rows = ["| param | base | this run |", "|---|---|---|"]
    rows += [f"| {key} | {fmt(v.get('old'))} | {fmt(v.get('new'))} |" for key, v in sorted(changed.items())]
    return "\n".join(rows)


def read_history(text):
    """dvclive's TSV (step<TAB>value) -> list of floats."""
    rows = list(csv.reader(io.StringIO(text), delimiter="\t"))
    return [float(row[-1]) for row in rows[1:] if row]


def curves_figure(current, base, base_name):
    """Loss and accuracy per epoch, train and test; the base run dashed."""
    from stages.figures import plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for split, colour in (("train", "tab:blue"), ("eval", "tab:orange")):
            label = "train" if split == "train" else "test"
            key = f"{split}/{metric}.tsv"
            if current.get(key):
                ax.plot(range(1, len(current[key]) + 1), current[key], color=colour, label=f"{label} (this run)")
            if base.get(key):
                ax.plot(
                    range(1, len(base[key]) + 1),
                    base[key],
                    color=colour,
                    linestyle="--",
                    label=f"{label} ({base_name})",
                )
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plots_template():
    """DVC's page layout with Vega inlined instead of loaded from a CDN."""
    scripts = "\n".join(
        f"<script>{(VEGA_DIR / name).read_text()}</script>"
        for name in ("vega.min.js", "vega-lite.min.js", "vega-embed.min.js")
    )
    return (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n<title>DVC plots</title>\n'
        f"{scripts}\n<style>table {{ border-spacing: 15px; }}</style>\n</head>\n<body>\n{{plot_divs}}\n"
        "</body>\n</html>\n"
    )


def write_plots_html(base, out_dir=PLOTS_DIR):
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template.html"
        template.write_text(plots_template())
        args = ["plots", "diff", *([base] if base else []), "-o", str(out_dir), "--html-template", str(template)]
        dvc(*args)
    return out_dir / "index.html"


def image(title, path):
    return f"![{title}]({Path(path).relative_to(REPORTS).as_posix()})" if Path(path).exists() else ""


def build_report(base="main"):
    metrics_file = REPORTS / "metrics.json"
    if not metrics_file.is_file():
        raise PipelineError(f"{metrics_file}: not found; run `dvc repro` first")
    current = flatten(json.loads(metrics_file.read_text()))
    has_base = base and revision_exists(base)
    base_metrics, params_diff, base_history = None, {}, {}
    if has_base:
        text = git_show(base, metrics_file.as_posix())
        base_metrics = flatten(json.loads(text)) if text else None
        params_diff = json.loads(dvc("params", "diff", base, "--json") or "{}")
        for key in HISTORY_KEYS:
            text = git_show(base, (HISTORY_DIR / key).as_posix())
            if text:
                base_history[key] = read_history(text)
    history = {
        key: read_history((HISTORY_DIR / key).read_text()) for key in HISTORY_KEYS if (HISTORY_DIR / key).is_file()
    }
    save_figure(CURVES_FIGURE, curves_figure(history, base_history, base or "base"))
    write_plots_html(base if has_base else None)

    stimuli = json.loads((REPORTS / "stimuli.json").read_text()) if (REPORTS / "stimuli.json").is_file() else {}
    lines = ["# CIFAR-10 pipeline report", ""]
    lines.append(f"Compared with `{base}`." if has_base else f"No base revision `{base}` found: no comparison.")
    lines += ["", "## Test metrics", "", metrics_table(current, base_metrics), ""]
    if has_base:
        lines += ["## Params that differ from the base", "", params_table(params_diff), ""]
    lines += ["## Per-class figures", "", per_class_table(current), ""]
    lines += ["## Training curves", "", image("training curves", CURVES_FIGURE), ""]
    lines += ["## Confusion matrix", "", image("confusion matrix", REPORTS / "figures/confusion_matrix.png"), ""]
    lines += ["## Predictions", "", image("predictions", REPORTS / "figures/predictions.png"), ""]
    if stimuli:
        lines += ["## Maximum stimuli", "", "| layer | filters | dead | mean activation |", "|---|---:|---:|---:|"]
        lines += [
            f"| {name} | {r['filters']} | {r['dead']} | {r['mean_activation']:.4f} |"
            for name, r in stimuli.get("layers", {}).items()
        ]
        lines.append("")
        for name in [*stimuli.get("layers", {}), "classes"]:
            lines += [f"### {name}", "", image(name, REPORTS / f"figures/stimuli/{name}.png"), ""]
        lines += ["### First-layer kernels", "", image("kernels", REPORTS / "figures/kernels.png"), ""]
    lines += ["Interactive plots (both runs on one chart): `reports/plots/index.html`.", ""]
    write_text(REPORT_FILE, "\n".join(lines))
    return REPORT_FILE


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m stages.report", description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="revision to compare with (default: %(default)s)")
    args = parser.parse_args(argv)
    path = build_report(args.base)
    print(f"wrote {path} and {PLOTS_DIR / 'index.html'}")


if __name__ == "__main__":
    sys.exit(run_stage(main))
