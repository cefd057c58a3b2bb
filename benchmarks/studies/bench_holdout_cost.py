"""The accuracy cost of holding training images out for the temperature, for each model, paired by seed.

    python -m benchmarks.studies.bench_holdout_cost --source path/to/cifar-10-python.tar.gz
        [--models seed_cnn airbench94_muon airbench94] [--images 2000] [--seeds 42] [--recipe quick]
        [--set airbench94_muon.epochs=4 ...]
        [--json out.json]

In one scratch workspace (fetch and preprocess once), for each model and seed, the train stage
then evaluate with `<model>.calibration_images: 0` (every image trained on) and with `--images`
held out, one after the other on the same data. Each row: test accuracy (evaluate's, with the
model's `tta` level, and the last epoch's validation without TTA), ECE and NLL of both runs, the
fitted temperature, and the paired differences (held out minus all). `--recipe quick` trains
each model at benchmarks/recipes.py's quick recipes (QUICK: seed_cnn 8 epochs at batch 64, the
airbench models 3 epochs at widths 16/64/64) instead of params.yaml's defaults, to fit a short
session; the held-out images are a slice of the training set either way, so the cost is theirs.
`--set section.key=value` changes params.yaml for every run, over the recipe.
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks.recipes import QUICK
from benchmarks.workspace import parse_override, run_stage, scratch_workspace, set_params
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu

RECIPES = {"defaults": {model: {} for model in QUICK}, "quick": QUICK}  # each model's, over params.yaml's


def trained_and_evaluated(root, model, recipe, seed, held_out, progress=print):
    """Train `model` (the workspace's recipe updated by `recipe`) holding `held_out` images out,
    then evaluate: the numbers of one side of a pair."""
    set_params(root, train={"model": model, "seed": seed})
    set_params(root, **{model: {**recipe, "calibration_images": held_out}})
    progress(f"{model}, seed {seed}, {held_out} images held out: train ...")
    train_s, _ = run_stage("train", root, show_output=True)
    run_stage("evaluate", root)
    artifacts = Artifacts(root)
    metrics = json.loads(artifacts.metrics.read_text())
    last_epoch = json.loads((artifacts.train_reports / "metrics.json").read_text())
    return {
        "accuracy": metrics["accuracy"],
        "accuracy_without_tta": round(last_epoch["test"]["accuracy"], 4),
        "ece": metrics["ece"],
        "nll": metrics["nll"],
        "temperature": metrics["temperature"],
        "ece_without_temperature": metrics["ece_without_temperature"],
        "train_s": round(train_s, 1),
    }


def paired_cost(pairs):
    """Mean and spread over seeds of (held out - all) for the accuracies, ECE and NLL: negative
    accuracy differences are the cost."""
    out = {}
    for key in ("accuracy", "accuracy_without_tta", "ece", "nll"):
        differences = [pair["held_out"][key] - pair["all"][key] for pair in pairs]
        spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
        out[key] = {"mean": round(statistics.mean(differences), 4), "std": round(spread, 4)}
    return out


def run(source, models, held_out, seeds, recipe="defaults", overrides=(), progress=print):
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench-holdout-") as scratch:
        root = Path(scratch)
        scratch_workspace(root, fetch={"source": str(Path(source).resolve())})
        for section, name, value in overrides:
            set_params(root, **{section: {name: value}})
        run_stage("fetch", root)
        run_stage("preprocess", root)
        for model in models:
            mine = {name: value for section, name, value in overrides if section == model}
            chosen = {**RECIPES[recipe][model], **mine}
            pairs = []
            for seed in seeds:  # the two sides of a seed one after the other: drift shows in both
                sides = {
                    name: trained_and_evaluated(root, model, chosen, seed, images, progress)
                    for name, images in (("all", 0), ("held_out", held_out))
                }
                pairs.append({"seed": seed, **sides})
            rows[model] = {"recipe": chosen, "pairs": pairs, "cost": paired_cost(pairs)}
    return {"benchmark": "holdout_cost", "held_out_images": held_out, "cpu": describe_cpu(), "models": rows}


def describe(result):
    lines = []
    for model, row in result["models"].items():
        for pair in row["pairs"]:
            everything, held = pair["all"], pair["held_out"]
            lines.append(
                f"{model} seed {pair['seed']}: accuracy {everything['accuracy']:.4f} with every image, "
                f"{held['accuracy']:.4f} with {result['held_out_images']} held out "
                f"(ECE {everything['ece']:.4f} -> {held['ece']:.4f}, temperature {held['temperature']:.3f})"
            )
        cost = row["cost"]["accuracy"]
        lines.append(f"{model}: accuracy difference {cost['mean']:+.4f} (spread {cost['std']:.4f})")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--models", nargs="+", choices=list(QUICK), default=["seed_cnn", "airbench94_muon"])
    parser.add_argument("--images", type=int, default=2000, help="images held out (default %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="train.seed of each pair")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="defaults")
    parser.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[])
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    if args.images <= 0:
        parser.error(f"--images {args.images}: must be a positive number of training images")
    result = run(args.source, args.models, args.images, args.seeds, args.recipe, args.overrides)
    print(describe(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
