"""Time to the tutorial's accuracy: a quick recipe versus the tutorial's recipe.

Both train with the real train stage on the same prepared data, one after the other in this
run: the tutorial's recipe of seed_cnn against one model's quick recipe (benchmarks/recipes.py's
QUICK), `--quick` naming the model: seed_cnn (QUICK_RECIPE, the tutorial's model trained faster),
airbench94_muon (AIRBENCH94_MUON_QUICK: the fast default's Muon recipe at a quarter of its arithmetic
in 3 epochs, the quickest way; docs/fast-model.md gives it as one `dvc exp run`) or airbench94
(AIRBENCH94_QUICK: the same widths with airbench94's SGD, the quickest before Muon). The target is
the test accuracy the tutorial's recipe ends at; each recipe's time is the wall time of training
(validation included: both validate every epoch) until its test accuracy first reaches it, read
from the stage's own per-epoch history (`elapsed_s`). Ratio = tutorial / quick.
The pair runs once per seed (train.seed; two by default), tutorial and quick taking
turns; the row gives every seed's ratio and their median.

    python -m benchmarks.bench_time_to_accuracy --source path/to/cifar-10-python.tar.gz
        [--quick seed_cnn | airbench94_muon | airbench94] [--seeds 42 43] [--json out.json]
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

from benchmarks.recipes import QUICK, QUICK_RECIPE, SEEDS
from benchmarks.workspace import run_stage, scratch_workspace, set_params
from cifar.core.artifacts import Artifacts


def history(root):
    metrics = Artifacts(root).history_dir

    def column(path):
        lines = (metrics / path).read_text().splitlines()[1:]
        return [float(line.split("\t")[1]) for line in lines]

    return column("test/accuracy.tsv"), column("train/elapsed_s.tsv")


def time_to(target, accuracy, elapsed):
    """Seconds until accuracy first reaches target (None if never), and that epoch (1-based)."""
    for epoch, (value, seconds) in enumerate(zip(accuracy, elapsed), start=1):
        if value >= target:
            return seconds, epoch
    return None, None


def compare(tutorial, quick, recipe=QUICK_RECIPE, model="seed_cnn"):
    """The result from both runs' histories, (test accuracies, elapsed seconds) each; the quick side
    trained `model` at `recipe`.

    The target is the accuracy the tutorial's recipe ends at; the ratio is None when
    the quick recipe never reaches it.
    """
    target = tutorial[0][-1]
    tutorial_s, tutorial_epoch = time_to(target, *tutorial)
    quick_s, quick_epoch = time_to(target, *quick)
    return {
        "benchmark": "time_to_accuracy",
        "target_accuracy": round(target, 4),
        "tutorial": {"seconds": round(tutorial_s, 1), "epoch": tutorial_epoch, "accuracy": tutorial[0]},
        "quick": {
            "model": model,
            "recipe": recipe,
            "seconds": None if quick_s is None else round(quick_s, 1),
            "epoch": quick_epoch,
            "final_accuracy": quick[0][-1],
            "accuracy": quick[0],
            "elapsed_s": quick[1][-1],
        },
        "ratio": None if quick_s is None else round(tutorial_s / quick_s, 2),
    }


def train(root, name, recipe, seed, progress=print, model="seed_cnn"):
    """Train `model` in `root` with `recipe` over params.yaml's, at train.seed `seed`: its history."""
    set_params(root, train={"seed": seed, "model": model})
    # the time to an accuracy is read off the per-epoch test accuracies
    set_params(root, **{model: {**recipe, "test_every_epoch": True}})
    progress(f"training the {name} recipe, seed {seed}: {recipe or '(params.yaml defaults)'} ...")
    run_stage("train", root, show_output=True)
    return history(root)


def compare_seeds(root, quick=QUICK_RECIPE, seeds=SEEDS, done=None, progress=print, model="seed_cnn"):
    """Tutorial and quick recipe taking turns, one pair per seed: {seed: compare(...)}.

    `done` maps a seed to the tutorial history already trained in `root` (dvc repro's).
    The tutorial's run must come first (it sets the target), so the pairs alternate T Q T Q.
    """
    tutorial_recipe = yaml.safe_load((root / "params.yaml").read_text())["seed_cnn"]
    results = {}
    for seed in seeds:
        tutorial = (done or {}).get(seed) or train(root, "tutorial", tutorial_recipe, seed, progress)
        results[seed] = compare(tutorial, train(root, "quick", quick, seed, progress, model), quick, model)
        set_params(root, seed_cnn=tutorial_recipe)
    return results


def summarise(results):
    """One row from the per-seed results: every seed's ratio, their median, and whether all reached it."""
    ratios = [result["ratio"] for result in results.values()]
    reached = all(r is not None for r in ratios)
    return {
        "benchmark": "time_to_accuracy",
        "seeds": {str(seed): result for seed, result in results.items()},
        "ratios": ratios,
        "ratio": statistics.median(ratios) if reached else None,
        "all_seeds_reached": reached,
    }


def describe(seed, result):
    target, tutorial, quick = result["target_accuracy"], result["tutorial"], result["quick"]
    if result["ratio"] is None:
        return (
            f"seed {seed}: time to {target:.4f}: tutorial {tutorial['seconds']:.0f}s; the quick recipe never "
            f"reached it (best {max(quick['accuracy']):.4f})"
        )
    return (
        f"seed {seed}: time to {target:.4f} test accuracy: tutorial {tutorial['seconds']:.0f}s "
        f"(epoch {tutorial['epoch']}), quick {quick['seconds']:.0f}s (epoch {quick['epoch']})  "
        f"ratio {result['ratio']:.2f}x"
    )


def run_in(root, quick=QUICK_RECIPE, seeds=SEEDS, progress=print):
    """The row, in a workspace `root` where `dvc repro` just trained the tutorial's recipe (at its
    train.seed, whose tutorial run is not repeated)."""
    trained_seed = yaml.safe_load((root / "params.yaml").read_text())["train"]["seed"]
    return summarise(compare_seeds(root, quick, seeds, done={trained_seed: history(root)}, progress=progress))


def run(source, quick=QUICK_RECIPE, seeds=SEEDS, progress=print, model="seed_cnn"):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_workspace(root, fetch={"source": str(Path(source).resolve())})
        run_stage("fetch", root)
        run_stage("preprocess", root)
        results = compare_seeds(root, quick, seeds, progress=progress, model=model)
    for seed, result in results.items():
        print(describe(seed, result))
    return summarise(results)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="train.seed of each pair")
    parser.add_argument(
        "--quick", choices=list(QUICK), default="seed_cnn", help="the quick side's model, at its quick recipe"
    )
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(args.source, QUICK[args.quick], seeds=args.seeds, model=args.quick)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["all_seeds_reached"] else 1


if __name__ == "__main__":
    sys.exit(main())
