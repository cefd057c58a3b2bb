"""Our airbench models at a peer's values against the peer's own code: same data, CPU and precision.

    python -m benchmarks.studies.bench_like_for_like --data data/prepared [--train-images 5000] [--test-images 0]
        [--seeds 0 1 2] [--peer airbench94 | airbench94_muon] [--widths 64 256 256]
        [--reference path/to/airbench94.py] [--precision float32 | auto] [--sides peer ours ours_defaults]
        [--json out.json]

For each seed, the two sides take turns on this machine, in float32 (or `--precision`): the peer's file itself
(PyTorch, through benchmarks/bench_airbench.py, in its own process) and our train stage then
evaluate stage with `train.model` the peer's port (airbench94 or airbench94_muon) at the peer's
values, on the same prepared arrays: the first `--train-images` of a seeded shuffle of the training
set (all of them with 0) and the whole test set. The peers: airbench94.py (AIRBENCH_VALUES:
AIRBENCH94_ORIGINAL's widths 64/256/256, batch 1,024 and rate over our airbench94 defaults, 10 epochs
where it trains 9.9) and airbench94_muon.py (AIRBENCH94_MUON_ORIGINAL: Muon, 8 epochs at batch 2,000,
the same steps on both sides); neither holds calibration images out. `--widths` runs both sides
narrower where the full ones do not fit the machine's time. Each row: test accuracy with airbench's
TTA (level 2) and without, and the side's wall time; then each side's mean and standard deviation
over the seeds, and the mean paired difference, so that a gap can be told from seed noise. Needs
PyTorch (the `reference` extra) for the peer's side.

`--sides` picks who trains (default: peer and ours): `ours_defaults` adds our recipe itself, the same
model at params.yaml's own values (for airbench94_muon, the speedrun's; with its calibration images held
out), to set our recipe's accuracy and time beside the peer's.
"""

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.recipes import AIRBENCH94_MUON_ORIGINAL, AIRBENCH94_ORIGINAL
from benchmarks.workspace import PROJECT, run_stage, set_params, stage_env, timed
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu

# airbench94's hyp in our airbench94 section's terms (docs/fast-model.md): 11.5 per 1,024 images on the
# summed loss is 1.5 on the mean loss; its peak at 23% of the epochs; 10 epochs for its 9.9.
AIRBENCH_VALUES = {
    **AIRBENCH94_ORIGINAL,  # widths 64/256/256, batch 1,024, rate 1.5
    "warmup_epochs": 2.3,
    "epochs": 10,
    "calibration_images": 0,
}


def subset_data(source, target, train_images, seed, test_images=0):
    """The prepared arrays of `source` in `target`, the training set cut to a seeded `train_images`
    (0: all) in a seeded random order. The order matters to airbench94: it whitens from the first
    5,000 training images, which in a class-sorted set (preprocess writes image folders class by
    class) are one class; the official CIFAR-10 batches are in random order."""
    target.mkdir(parents=True)
    for path in Path(source).iterdir():
        shutil.copy(path, target / path.name)
    x, y = np.load(target / "x_train.npy"), np.load(target / "y_train.npy")
    chosen = np.random.default_rng(seed).permutation(len(y))[: train_images or len(y)]
    np.save(target / "x_train.npy", x[chosen])
    np.save(target / "y_train.npy", y[chosen])
    if test_images:  # a seeded subset of the test set, in order
        x, y = np.load(target / "x_test.npy"), np.load(target / "y_test.npy")
        kept = np.sort(np.random.default_rng(seed).permutation(len(y))[:test_images])
        np.save(target / "x_test.npy", x[kept])
        np.save(target / "y_test.npy", y[kept])


def run_ours(data, seed, scratch, values=AIRBENCH_VALUES, model="airbench94", precision="float32", name="ours"):
    """Train and evaluate our `model` at `values` on `data` in `precision`: accuracy with TTA 2 (every
    test image's views, as the peers do) and without, wall s."""
    root = scratch / f"{name}-{seed}"
    shutil.copytree(data, Artifacts(root).prepared_dir)
    shutil.copyfile(PROJECT / "params.yaml", root / "params.yaml")
    set_params(root, train={"model": model, "precision": precision, "seed": seed})
    set_params(root, **{model: values}, evaluate={"tta_fraction": 1.0})
    started = time.perf_counter()
    run_stage("train", root, show_output=True)
    trained = time.perf_counter() - started
    accuracies = {}
    for level in (2, 0):
        set_params(root, tta={model: level})
        run_stage("evaluate", root)
        accuracies[level] = json.loads(Artifacts(root).metrics.read_text())["accuracy"]
    return {"accuracy_tta": accuracies[2], "accuracy": accuracies[0], "train_s": round(trained, 1)}


def ours_values(peer, widths=None):
    """The values of our model `peer` (each peer's port has its name) for the peer's run, at `widths`
    (default: the peer's 64/256/256), over params.yaml's section of that model."""
    if peer == "airbench94":
        return {**AIRBENCH_VALUES, **({"widths": list(widths)} if widths else {})}
    widths = list(widths or AIRBENCH94_MUON_ORIGINAL["widths"])
    # airbench94_muon divides the head's output by its inputs, the last width: `self.head(x) / x.size(-1)`
    return {**AIRBENCH94_MUON_ORIGINAL, "widths": widths, "output_scale": 1 / widths[-1]}


def own_values(widths=None):
    """Our recipe's own values (params.yaml's section of the model), at `widths` where given."""
    return {"widths": list(widths)} if widths else {}


def run_reference(data, seed, scratch, reference=None, peer="airbench94", widths=None, precision="float32"):
    """The peer's file on `data` in its own process, in `precision`: accuracy with its TTA and without, wall s."""
    out = scratch / f"{peer}-{seed}.json"
    command = [sys.executable, "-m", "benchmarks.bench_airbench", "--data", str(data), "--seed", str(seed)]
    command += ["--peer", peer, *(["--widths", *map(str, widths)] if widths else [])]
    command += ["--precision", precision, "--json", str(out), *(["--reference", str(reference)] if reference else [])]
    timed(command, PROJECT, stage_env(), show_output=True)
    result = json.loads(out.read_text())
    return {
        "accuracy_tta": result["test_accuracy_tta"],
        "accuracy": result["test_accuracy"],
        "train_s": result["train_s"],
    }


def summary(rows, peer="airbench94"):
    """Mean and standard deviation of each side's accuracies and seconds, and, where the peer ran, the
    mean paired difference of each of our sides from it (`difference_...` for "ours", at its values)."""
    out = {}
    sides = [side for side in rows[0] if side != "seed"]
    for side in sides:
        for key in ("accuracy_tta", "accuracy", "train_s"):
            values = [row[side][key] for row in rows]
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            out[f"{side}_{key}"] = {"mean": round(statistics.mean(values), 4), "std": round(spread, 4)}
    ours_sides = [side for side in sides if side.startswith("ours")] if peer in sides else []
    for side in ours_sides:
        prefix = "difference" if side == "ours" else f"difference_{side}"
        for key in ("accuracy_tta", "accuracy"):
            differences = [row[side][key] - row[peer][key] for row in rows]
            spread = statistics.stdev(differences) if len(differences) > 1 else 0.0
            out[f"{prefix}_{key}"] = {"mean": round(statistics.mean(differences), 4), "std": round(spread, 4)}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/prepared", help="the folder preprocess wrote (default %(default)s)")
    parser.add_argument("--train-images", type=int, default=5000, help="training images (0: all; default 5000)")
    parser.add_argument("--test-images", type=int, default=0, help="test images (0: all, the default)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--peer", choices=["airbench94", "airbench94_muon"], default="airbench94")
    parser.add_argument("--widths", type=int, nargs=3, help="both sides' widths (default: the peer's 64 256 256)")
    parser.add_argument("--reference", help="the peer's file at the pinned commit (bench_airbench.py)")
    parser.add_argument(
        "--precision",
        choices=["float32", "auto", "mixed_bfloat16"],
        default="float32",
        help="both sides' (default %(default)s; auto: bfloat16 where this CPU has bfloat16 units, as train.precision)",
    )
    parser.add_argument(
        "--sides",
        nargs="+",
        choices=["peer", "ours", "ours_defaults"],
        default=["peer", "ours"],
        help="who trains: the peer's code, our port at its values, our port at params.yaml's (default: peer ours)",
    )
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    values = ours_values(args.peer, args.widths)
    rows = []
    with tempfile.TemporaryDirectory(prefix="like-for-like-") as tmp:
        scratch = Path(tmp)
        data = scratch / "data"
        subset_data(args.data, data, args.train_images, seed=0, test_images=args.test_images)
        for index, seed in enumerate(args.seeds):
            every_side = {
                args.peer: lambda seed=seed: run_reference(
                    data, seed, scratch, args.reference, args.peer, args.widths, args.precision
                ),
                "ours": lambda seed=seed: run_ours(data, seed, scratch, values, args.peer, args.precision),
                "ours_defaults": lambda seed=seed: run_ours(
                    data, seed, scratch, own_values(args.widths), args.peer, args.precision, "ours-defaults"
                ),
            }
            chosen = [args.peer if side == "peer" else side for side in args.sides]
            sides = {side: every_side[side] for side in every_side if side in chosen}
            order = list(sides) if index % 2 == 0 else list(sides)[::-1]  # interleaved: A B, B A, ...
            row = {"seed": seed, **{side: sides[side]() for side in order}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {
        "benchmark": "like_for_like",
        "peer": args.peer,
        "cpu": describe_cpu(),
        "precision": args.precision,
        "train_images": args.train_images or "all",
        "test_images": args.test_images or "all",
        "ours_values": values,
        "rows": rows,
        "summary": summary(rows, args.peer),
    }
    print(json.dumps(result["summary"], indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
