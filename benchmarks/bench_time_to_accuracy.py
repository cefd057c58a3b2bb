"""Time to the tutorial's accuracy: the quick recipe versus the tutorial's recipe.

Both train seed_cnn with the real train stage on the same prepared data, one
after the other in this run. The target is the test accuracy the tutorial's
recipe ends at; each recipe's time is the wall time of training (validation
included: both validate every epoch) until its test accuracy first reaches it,
read from the stage's own per-epoch history (`elapsed_s`). Ratio = tutorial / quick.

    python -m benchmarks.bench_time_to_accuracy --source ../shared/data/cifar10-jpeg.tar.gz [--json out.json]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

from benchmarks.workspace import run_stage, scratch_workspace, set_params

# The quick recipe: a larger batch, a warm-up to twice the tutorial's rate and a cosine decay to
# zero, in fewer epochs; bfloat16 where `train.precision: auto` finds it. README ("Quick recipe")
# gives the same as `dvc exp run -S`. Trials here (5 epochs, test accuracy): batch 256 at 0.01:
# 0.728; batch 64 at 0.01: 0.750, 0.723 after 3 (the tutorial's recipe: 0.713 after 3).
QUICK_RECIPE = {
    "batch_size": 64,
    "learning_rate": 0.01,
    "schedule": "warmup_cosine",
    "warmup_epochs": 0.5,
    "epochs": 8,
}


def history(root):
    metrics = root / "reports/train/plots/metrics"

    def column(path):
        lines = (metrics / path).read_text().splitlines()[1:]
        return [float(line.split("\t")[1]) for line in lines]

    return column("eval/accuracy.tsv"), column("train/elapsed_s.tsv")


def time_to(target, accuracy, elapsed):
    """Seconds until accuracy first reaches target (None if never), and that epoch (1-based)."""
    for epoch, (value, seconds) in enumerate(zip(accuracy, elapsed), start=1):
        if value >= target:
            return seconds, epoch
    return None, None


def compare(tutorial, quick, recipe=QUICK_RECIPE):
    """The result from both runs' histories, (test accuracies, elapsed seconds) each.

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
            "recipe": recipe,
            "seconds": None if quick_s is None else round(quick_s, 1),
            "epoch": quick_epoch,
            "final_accuracy": quick[0][-1],
            "accuracy": quick[0],
            "elapsed_s": quick[1][-1],
        },
        "ratio": None if quick_s is None else round(tutorial_s / quick_s, 2),
    }


def run(source, quick=QUICK_RECIPE, progress=print):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_workspace(source, root)
        run_stage("fetch", root)
        run_stage("preprocess", root)
        runs = {}
        for name, overrides in (("tutorial", {}), ("quick", quick)):
            set_params(root, "seed_cnn", overrides)
            progress(f"training the {name} recipe {overrides or '(params.yaml defaults)'} ...")
            run_stage("train", root, show_output=True)
            runs[name] = history(root)
    result = compare(runs["tutorial"], runs["quick"], quick)
    target, tutorial, fast = result["target_accuracy"], result["tutorial"], result["quick"]
    if result["ratio"] is None:
        print(
            f"time to {target:.4f}: tutorial {tutorial['seconds']:.0f}s; the quick recipe never reached it "
            f"(best {max(fast['accuracy']):.4f})"
        )
    else:
        print(
            f"time to {target:.4f} test accuracy: tutorial {tutorial['seconds']:.0f}s (epoch {tutorial['epoch']}), "
            f"quick {fast['seconds']:.0f}s (epoch {fast['epoch']})  ratio {result['ratio']:.2f}x"
        )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    result = run(args.source)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ratio"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
