"""A fast model's accuracy against its training time: recipes of several widths and epochs, each with
every training image and with the temperature's held-out images, on the same prepared data.

    python -m benchmarks.studies.bench_fast_curve --source path/to/cifar-10-python.tar.gz
        [--model airbench94_muon | airbench94] [--points 64,256,256x8 32,128,128x8 ...] [--holdout 0 2000]
        [--seed 42] [--set airbench94_muon.key=value ...] [--json out.json]

Fetch and preprocess run once; then, for each point (widths x epochs) and each `--holdout` value
(<model>.calibration_images), the train and evaluate stages run on params.yaml's defaults of `--model`
(airbench94_muon, the fast default, unless given) with those values (and any --set), one after the
other. Each row: test accuracy with the defaults' TTA and without (the last epoch's validation), ECE
(with the temperature where images were held out), the train and evaluate stages' wall seconds, and
the median epoch (the first also traces). On a CPU that trains in float32 where users' CPUs train in
bfloat16, divide a row's seconds by the ratio of its `epoch_s` at 64/256/256 to a bfloat16 machine's
epoch at the same recipe (docs/fast-model.md).
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.workspace import epoch_seconds, parse_override, run_stage, scratch_workspace, set_params
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu

DEFAULT_POINTS = ("16,64,64x8", "32,128,128x8", "64,256,256x8")
MODELS = ("airbench94_muon", "airbench94")  # the models with widths


def parse_point(text):
    """'32,128,128x8' -> ([32, 128, 128], 8)."""
    widths, _, epochs = text.partition("x")
    try:
        parsed = [int(w) for w in widths.split(",")], int(epochs)
    except ValueError:
        parsed = None
    if parsed is None or len(parsed[0]) != 3:
        raise argparse.ArgumentTypeError(f"--points {text!r}: expected three widths and epochs, as 32,128,128x8")
    return parsed


def run(source, points, holdouts=(0, 2000), seed=42, overrides=(), progress=print, model=MODELS[0]):
    rows = []
    with tempfile.TemporaryDirectory(prefix="fast-curve-") as scratch:
        root = Path(scratch)
        params = scratch_workspace(root, fetch={"source": str(Path(source).resolve())})
        set_params(root, train={"model": model, "seed": seed})
        for section, name, value in overrides:
            set_params(root, **{section: {name: value}})
        for stage in ("fetch", "preprocess"):
            run_stage(stage, root)
        for widths, epochs in points:
            for holdout in holdouts:
                set_params(root, **{model: {"widths": widths, "epochs": epochs, "calibration_images": holdout}})
                progress(f"widths {widths}, {epochs} epochs, {holdout} images held out ...")
                train_s, _ = run_stage("train", root)
                evaluate_s, _ = run_stage("evaluate", root)
                metrics = json.loads(Artifacts(root).metrics.read_text())
                last_epoch = json.loads((Artifacts(root).train_reports / "metrics.json").read_text())
                epochs_s = epoch_seconds(root)
                rows.append(
                    {
                        "widths": widths,
                        "epochs": epochs,
                        "calibration_images": holdout,
                        "accuracy_tta": metrics["accuracy"],
                        "accuracy": round(last_epoch["test"]["accuracy"], 4),
                        "ece": metrics["ece"],
                        "ece_without_temperature": metrics["ece_without_temperature"],
                        "train_s": round(train_s, 1),
                        "evaluate_s": round(evaluate_s, 1),
                        "epoch_s": statistics.median(epochs_s),
                        "epochs_s": epochs_s,
                    }
                )
                progress(json.dumps(rows[-1]))
    return {
        "cpu": describe_cpu(),
        "seed": seed,
        "model": model,
        "model_params": params[model],
        "overrides": overrides,
        "rows": rows,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--model", choices=MODELS, default=MODELS[0], help="train.model (default %(default)s)")
    parser.add_argument("--points", nargs="+", type=parse_point, default=[parse_point(p) for p in DEFAULT_POINTS])
    parser.add_argument("--holdout", type=int, nargs="+", default=[0, 2000], help="<model>.calibration_images values")
    parser.add_argument("--seed", type=int, default=42, help="train.seed")
    parser.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[])
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.source, args.points, args.holdout, args.seed, args.overrides, model=args.model)
    print("      widths epochs held out     TTA    none     ECE  train s  epoch s")
    for row in result["rows"]:
        widths = "/".join(map(str, row["widths"]))
        print(
            f"{widths:>12} {row['epochs']:>6} {row['calibration_images']:>8} {row['accuracy_tta']:>7.4f} "
            f"{row['accuracy']:>7.4f} {row['ece']:>7.4f} {row['train_s']:>8} {row['epoch_s']:>8}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
