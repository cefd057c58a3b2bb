"""What each of airbench94's additions brings to our airbench94 model: its defaults (airbench94's SGD
recipe at half its widths) with all of them, with each turned off in turn, and with none, trained and
evaluated on the same class-balanced subset.

    python -m benchmarks.studies.bench_fast_ablation --source path/to/cifar-10-python.tar.gz
        [--train-images 8000] [--test-images 2000] [--seeds 42 43] [--only all none] [--json out.json]

In a scratch workspace (params.yaml pointed at --source), fetch and preprocess run once; then each
variant and seed runs the train and evaluate stages: the table gives the test accuracy with the
recipe's test-time augmentation and without it (the last epoch's validation), and the train stage's
seconds. The whitening layer's translation (airbench's scale, its bias at the plain rate) is not a
switch: it is how the model is built in every variant.
"""

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from benchmarks.workspace import run_stage, scratch_workspace, set_params
from cifar.core.artifacts import Artifacts

MODEL = "airbench94"

# Each addition, and the airbench94 params that turn it off (back to what the model did before it).
ADDITIONS = {
    "alternating flip": {"flip": "random"},
    "identity init": {"init": "keras"},
    "triangle schedule": {"schedule": "cosine"},
    "whitening bias frozen": {"whiten_bias_epochs": None},
    "lookahead": {"lookahead_every": 0},
}


def variants():
    """{name: airbench94 overrides}: all additions, each one off, none."""
    found = {"all": {}}
    for name, off in ADDITIONS.items():
        found[f"without {name}"] = off
    found["none"] = {key: value for off in ADDITIONS.values() for key, value in off.items()}
    return found


def run(source, train_images=8000, test_images=2000, seeds=(42,), only=None, progress=print):
    chosen = {name: off for name, off in variants().items() if not only or name in only}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-ablation-") as scratch:
        root = Path(scratch)
        params = scratch_workspace(root, fetch={"source": str(Path(source).resolve())})
        set_params(root, preprocess={"max_train_images": train_images, "max_test_images": test_images})
        for stage in ("fetch", "preprocess"):
            run_stage(stage, root)
        for name, off in chosen.items():
            for seed in seeds:
                set_params(root, train={"model": MODEL, "seed": seed})
                set_params(root, **{MODEL: {**params[MODEL], **off}})
                train_s, _ = run_stage("train", root)
                run_stage("evaluate", root)
                metrics = json.loads(Artifacts(root).metrics.read_text())
                last_epoch = json.loads((Artifacts(root).train_reports / "metrics.json").read_text())
                result = {
                    "test_accuracy": metrics["accuracy"],
                    "test_accuracy_without_tta": round(last_epoch["test"]["accuracy"], 4),
                    "train_s": round(train_s, 1),
                }
                results.setdefault(name, {})[seed] = result
                progress(f"{name}, seed {seed}: {json.dumps(result)}")
    return {
        "train_images": train_images,
        "test_images": test_images,
        "model": MODEL,
        "model_params": params[MODEL],
        "variants": {
            name: {"off": chosen[name], "seeds": by_seed, **means(by_seed)} for name, by_seed in results.items()
        },
    }


def means(by_seed):
    return {
        f"mean_{key}": round(statistics.mean(result[key] for result in by_seed.values()), 4)
        for key in ("test_accuracy", "test_accuracy_without_tta", "train_s")
    }


def print_table(result):
    print(f"\n{result['model']} on {result['train_images']} training / {result['test_images']} test images")
    print(f"{'variant':34s} {'TTA acc':>8s} {'no TTA':>8s} {'train s':>8s}  seeds")
    for name, variant in result["variants"].items():
        print(
            f"{name:34s} {variant['mean_test_accuracy']:8.4f} {variant['mean_test_accuracy_without_tta']:8.4f} "
            f"{variant['mean_train_s']:8.1f}  {', '.join(map(str, variant['seeds']))}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--train-images", type=int, default=8000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--only", nargs="+", choices=list(variants()), help="these variants only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = run(args.source, args.train_images, args.test_images, args.seeds, args.only)
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
