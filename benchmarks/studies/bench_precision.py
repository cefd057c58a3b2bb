"""Test accuracy of the tutorial's recipe in float32 and in mixed bfloat16, trained one after the other.

Both runs train with the real train stage on the same prepared data and seeds,
then the evaluate stage scores them on the test set. On hardware without bfloat16
units (AVX2-only CPUs) bfloat16 is emulated and several times slower: use
--max-train-images / --epochs there to compare on a subset.

    python -m benchmarks.studies.bench_precision --source path/to/cifar-10-python.tar.gz \
        [--max-train-images 5000] [--epochs 3]
"""

import argparse
import json
import tempfile
from pathlib import Path

from benchmarks.workspace import run_stage, scratch_workspace, set_params
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu

PRECISIONS = ("float32", "mixed_bfloat16")


def run(source, max_train_images=None, max_test_images=None, epochs=None, progress=print):
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_workspace(root, fetch={"source": str(Path(source).resolve())})
        set_params(root, preprocess={"max_train_images": max_train_images, "max_test_images": max_test_images})
        run_stage("fetch", root)
        run_stage("preprocess", root)
        for policy in PRECISIONS:
            set_params(root, train={"precision": policy})
            set_params(root, seed_cnn={"epochs": epochs} if epochs else {})
            progress(f"training in {policy} ...")
            train_s, _ = run_stage("train", root, show_output=True)
            run_stage("evaluate", root)
            metrics = json.loads(Artifacts(root).metrics.read_text())
            results[policy] = {"accuracy": metrics["accuracy"], "loss": metrics["loss"], "train_s": round(train_s, 1)}
    gap = results["mixed_bfloat16"]["accuracy"] - results["float32"]["accuracy"]
    row = {
        "benchmark": "precision",
        "cpu": describe_cpu(),
        "max_train_images": max_train_images,
        "epochs": epochs,
        **results,
        "accuracy_gap_points": round(100 * gap, 2),
    }
    for policy, result in results.items():
        print(
            f"{policy:15s} test accuracy {result['accuracy']:.4f}  loss {result['loss']:.4f}  "
            f"train {result['train_s']:.0f}s"
        )
    print(f"bfloat16 - float32: {100 * gap:+.2f} points of test accuracy (CPU: {row['cpu']})")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--max-train-images", type=int, help="a class-balanced subset (default: all)")
    parser.add_argument("--max-test-images", type=int, help="a class-balanced subset (default: all)")
    parser.add_argument("--epochs", type=int, help="default: seed_cnn.epochs of params.yaml")
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    row = run(args.source, args.max_train_images, args.max_test_images, args.epochs)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
