"""The lines each stage prints for its user, read back and checked against the record they summarise.

Each checker parses the printed text with its own pattern (not the stage's format string) and compares
every figure with the record's value, to the precision printed: a line that shows another figure, or the
right figure under another name, fails.
"""

import json
import re

import numpy as np

NUMBER = r"(-?\d+(?:\.\d+)?)"


def shown(printed, value, places):
    """`printed` (text) is `value` rounded to `places` decimals."""
    assert abs(float(printed) - value) <= 0.5 * 10**-places + 1e-12, f"{printed} shown for {value}"
    assert len(printed.partition(".")[2]) == places, f"{printed}: not {places} decimals"


def one_line(lines, pattern):
    """The match of the one line of `lines` that matches `pattern` whole."""
    found = [m for m in (re.fullmatch(pattern, line) for line in lines) if m]
    assert len(found) == 1, f"{len(found)} lines match {pattern!r} in:\n" + "\n".join(lines)
    return found[0]


def check_preprocess(lines, artifacts):
    m = one_line(lines, r"prepared (\d+) train and (\d+) test images of (\d+) classes in (.+)")
    assert int(m[1]) == len(np.load(artifacts.y_train)) and int(m[2]) == len(np.load(artifacts.y_test))
    assert int(m[3]) == len(artifacts.load_classes()) and m[4] == str(artifacts.prepared_dir)


def check_train(lines, model_name, artifacts):
    """The last line, against reports/train/metrics.json (the last epoch) and its history."""
    record = json.loads((artifacts.train_reports / "metrics.json").read_text())
    epochs = len((artifacts.history_dir / "train/loss.tsv").read_text().splitlines()) - 1
    m = one_line(
        lines,
        rf"trained (\w+): (\d+) epochs in {NUMBER} s; last epoch: train accuracy {NUMBER} loss {NUMBER}, "
        rf"test accuracy {NUMBER} loss {NUMBER}",
    )
    assert m[1] == model_name and int(m[2]) == epochs
    shown(m[3], record["train"]["elapsed_s"], 1)
    shown(m[4], record["train"]["accuracy"], 4)
    shown(m[5], record["train"]["loss"], 4)
    shown(m[6], record["test"]["accuracy"], 4)
    shown(m[7], record["test"]["loss"], 4)


def check_evaluate(lines, metrics, tta_level, tta_fraction=1.0):
    m = one_line(
        lines,
        rf"test accuracy: {NUMBER}  loss: {NUMBER}  ECE: {NUMBER}  \(temperature {NUMBER}; without it ECE {NUMBER}\)"
        rf"  \(test-time augmentation: (\d+)(?:, on the (\d+)% least confident images)?\)",
    )
    for group, key, places in [
        (1, "accuracy", 4),
        (2, "loss", 4),
        (3, "ece", 4),
        (4, "temperature", 3),
        (5, "ece_without_temperature", 4),
    ]:
        shown(m[group], metrics[key], places)
    assert int(m[6]) == tta_level
    # the share of images that got the views, said only when not every image did
    assert (int(m[7]) if m[7] else 100) == (round(tta_fraction * 100) if tta_level else 100)


def check_robustness(lines, record):
    """Generated corruptions: a line per corruption (its accuracy at each severity); published: a line per
    corruption and severity, numbered; then the means."""
    corruptions = record["corruptions"]
    if "source" not in record:
        for name, values in corruptions.items():
            m = one_line(lines, rf"{name}: accuracy {' '.join([NUMBER] * 5)} at severities 1-5")
            for severity in range(1, 6):
                shown(m[severity], values[f"severity_{severity}"], 3)
    else:
        total = 5 * len(corruptions)
        for index, (name, severity) in enumerate(((n, s) for n in corruptions for s in range(1, 6)), 1):
            m = one_line(lines, rf"\[{index}/{total}\] {name} severity {severity}: accuracy {NUMBER} \(.*\)")
            shown(m[1], corruptions[name][f"severity_{severity}"], 4)
    benchmark = rf"; over the (\d+) benchmark corruptions {NUMBER}" if "source" in record else ""
    m = one_line(lines, rf"mean corruption accuracy {NUMBER} \(clean {NUMBER}\){benchmark}")
    shown(m[1], record["mean_corruption_accuracy"], 4)
    shown(m[2], record["clean_accuracy"], 4)
    if benchmark:
        assert int(m[3]) == 15
        shown(m[4], record["mean_benchmark_corruption_accuracy"], 4)


def check_export(lines, record, formats):
    for name in formats:
        m = one_line(lines, rf"{name}: (\{{.*\}})")
        assert json.loads(m[1].replace("'", '"')) == record[name]


def check_visualize(lines, record):
    for layer, figures in record["layers"].items():
        m = one_line(lines, rf"stimuli of {layer}: (\d+) filters, (\d+) dead")
        assert (int(m[1]), int(m[2])) == (figures["filters"], figures["dead"])
    m = one_line(lines, rf"visualised (\d+) filters of (\d+) layers and (\d+) classes in {NUMBER}s")
    assert int(m[1]) == sum(figures["filters"] for figures in record["layers"].values())
    assert (int(m[2]), int(m[3])) == (len(record["layers"]), len(record["classes"]))


def table_rows(markdown, heading):
    """{first cell: [other cells]} of the first table under `heading` in a Markdown report."""
    paragraphs = [text.strip() for text in markdown.split(f"\n{heading}\n", 1)[1].split("\n\n")]
    rows = {}
    for line in next(text for text in paragraphs if text.startswith("|")).splitlines()[2:]:  # past header, rule
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def check_report_robustness(markdown, record):
    """The report's robustness section: the published set's sentence (source, images per severity), then a
    row per corruption (its mean over severities), the clean accuracy, and the means, each as recorded."""
    heading = "## Robustness: accuracy under common corruptions"
    first = markdown.split(f"\n{heading}\n", 1)[1].split("\n\n")[0].strip()
    if "source" in record:
        assert first == f"The published set `{record['source']}`, {record['images_per_severity']} images per severity."
    else:
        assert first.startswith("|"), "a sentence about a published set where none was used"
    rows = table_rows(markdown, heading)
    labels = {
        "no corruption": record["clean_accuracy"],
        **{name.replace("_", " "): values["mean"] for name, values in record["corruptions"].items()},
        "**mean of all, every severity**": record["mean_corruption_accuracy"],
    }
    if "source" in record:
        labels["**mean of the 15 benchmark corruptions (the papers', RobustBench's)**"] = record[
            "mean_benchmark_corruption_accuracy"
        ]
        labels["**mean of the 4 extra corruptions**"] = record["mean_extra_corruption_accuracy"]
    assert list(rows) == list(labels), list(rows)
    for label, value in labels.items():
        shown(rows[label][0], value, 4)
        assert rows[label][1:] == ["–", ""], "no base, no change"
