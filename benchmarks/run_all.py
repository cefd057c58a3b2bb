"""Run every benchmark on real data, print one table, write it as JSON.

    python -m benchmarks.run_all --source ../shared/data/cifar10-jpeg.tar.gz [--json benchmarks/results/all.json]

It copies the project (its committed files) into a scratch git + DVC repository whose
fetch.source is `--source`, runs the whole default pipeline there with `dvc repro`,
and then pairs each figure with a baseline measured in the same run on this machine
(ratio = how many times better ours is):
  1. training throughput at batch 32: the train stage's loop vs plain model.fit on float32 arrays
  2. time to the tutorial recipe's final test accuracy: the quick recipe vs the tutorial's
  3. preprocess of all images: the stage vs a plain single-process decode; peak RSS of preprocess and train
  4. maximum stimuli of every conv filter: the visualize stage's method vs the tutorial's
  5. `dvc status` and a no-op `dvc repro` vs DVC's start-up (`dvc version`)
  6. the whole default `dvc repro` from scratch (fetch to visualize)
It takes about as long as two trainings (about 30 minutes on a 2-core CPU).
`--smoke` runs every row on a small subset for one epoch: it checks the command, not the speed.
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import bench_time_to_accuracy, bench_train, bench_visualize
from benchmarks.workspace import PROJECT, run_stage, scratch_workspace, set_params, timed
from cifar.training.precision import describe_cpu


def plain_decode(archive):
    """The straightforward way: stream the tar, decode each image with Pillow, one process."""
    images = []
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith((".png", ".jpg", ".jpeg")):
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    images.append(np.asarray(image.convert("RGB")))
    return len(images)


def scratch_repository(source, root, smoke=False):
    """The project's committed files in `root`, as a fresh git + DVC repository aimed at `source`."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((PROJECT / name).read_bytes())
    scratch_workspace(source, root)
    if smoke:
        set_params(root, "preprocess", SMOKE_PREPROCESS)
        set_params(root, "seed_cnn", SMOKE_TRAIN)
    for command in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "benchmark"]):
        subprocess.run(command, cwd=root, check=True, env=git_env())


def git_env():
    return {
        **os.environ,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@localhost",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@localhost",
    }


def dvc_command(*args):
    return [str(Path(sys.executable).parent / "dvc"), *args]


def dvc_env():
    """`python` in dvc.yaml's commands must be this interpreter; stages import from the workspace."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def row(name, ours, baseline, unit, better="lower", **extra):
    ratio = baseline / ours if better == "lower" else ours / baseline
    return {
        "row": name,
        "ours": round(ours, 3),
        "baseline": round(baseline, 3),
        "unit": unit,
        "ratio": round(ratio, 2),
        **extra,
    }


# --smoke: every row on a subset, one epoch each.
SMOKE_PREPROCESS = {"max_train_images": 500, "max_test_images": 200}
SMOKE_TRAIN = {"epochs": 1}
SMOKE_THROUGHPUT = {"count": 320, "epochs": 1, "same_settings": False}
SMOKE_STIMULI = {"max_filters": 2}


def run(source, smoke=False, progress=print):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scratch_repository(source, root, smoke)
        progress("6. dvc repro from scratch, default params ...")
        repro_s, repro_rss, _ = timed(dvc_command("repro"), root, dvc_env(), show_output=True)

        repeats = 1 if smoke else 3  # the median of three
        startup = min(timed(dvc_command("version"), root, dvc_env())[0] for _ in range(repeats))
        status_s = sorted(timed(dvc_command("status"), root, dvc_env())[0] for _ in range(repeats))[repeats // 2]
        noop_s = sorted(timed(dvc_command("repro"), root, dvc_env())[0] for _ in range(repeats))[repeats // 2]

        progress("3. preprocess ...")
        preprocess_s, preprocess_rss = run_stage("preprocess", root)
        start = time.perf_counter()
        plain_decode(root / "data/raw/dataset")
        plain_s = time.perf_counter() - start

        progress("4. stimuli ...")
        import keras

        model = keras.models.load_model(root / "models/model.keras")
        stimuli = bench_visualize.run(model, **(SMOKE_STIMULI if smoke else {}))["total"]

        progress("2. the quick recipe ...")
        tutorial = bench_time_to_accuracy.history(root)
        set_params(root, "seed_cnn", {**bench_time_to_accuracy.QUICK_RECIPE, **(SMOKE_TRAIN if smoke else {})})
        _, train_rss = run_stage("train", root, show_output=True)
        quick = bench_time_to_accuracy.history(root)

    progress("1. training throughput ...")
    throughput = bench_train.run(**(SMOKE_THROUGHPUT if smoke else {}))
    rows.append(
        row(
            "1. train throughput, batch 32 (ours: stage loop; baseline: model.fit float32, TF defaults)",
            throughput["ours_images_per_s"],
            throughput["baseline_images_per_s"],
            "images/s",
            better="higher",
            same_settings_ratio=throughput.get("ratio_at_same_settings"),
        )
    )
    speedup = bench_time_to_accuracy.compare(tutorial, quick)
    time_row = {
        "target_accuracy": speedup["target_accuracy"],
        "tutorial_epoch": speedup["tutorial"]["epoch"],
        "quick_best_accuracy": round(max(speedup["quick"]["accuracy"]), 4),
        "quick_epoch": speedup["quick"]["epoch"],
    }
    if speedup["ratio"] is None:  # never reached: the ratio is at most the time the quick recipe ran
        rows.append(
            {
                "row": "2. time to the tutorial's final accuracy: quick recipe did not reach it",
                "ours": round(speedup["quick"]["elapsed_s"], 1),
                "baseline": speedup["tutorial"]["seconds"],
                "unit": "s",
                **time_row,
            }
        )
    else:
        rows.append(
            row(
                f"2. time to {speedup['target_accuracy']:.4f} test accuracy "
                "(ours: quick recipe; baseline: tutorial recipe)",
                speedup["quick"]["seconds"],
                speedup["tutorial"]["seconds"],
                "s",
                **time_row,
            )
        )
    rows.append(
        row(
            "3. preprocess all images (ours: stage; baseline: streamed tar + Pillow, 1 process)",
            preprocess_s,
            plain_s,
            "s",
            peak_rss_mb=round(preprocess_rss),
        )
    )
    rows.append(
        {"row": "3b. peak RSS of the train stage (quick recipe, all images)", "ours": round(train_rss), "unit": "MB"}
    )
    rows.append(
        row(
            "4. stimuli of all conv filters (ours: one compiled loop; baseline: the tutorial's)",
            stimuli["ours_s"],
            stimuli["tutorial_s"],
            "s",
            filters=stimuli["filters"],
        )
    )
    rows.append(row("5a. dvc status (baseline: dvc version)", status_s, startup, "s"))
    rows.append(row("5b. dvc repro, nothing changed (baseline: dvc version)", noop_s, startup, "s"))
    rows.append(
        {
            "row": "6. dvc repro from scratch, default params (fetch to visualize)",
            "ours": round(repro_s, 1),
            "unit": "s",
            "peak_rss_mb": round(repro_rss),
        }
    )
    return rows, {"train": throughput["settings"]}


def print_table(rows):
    print(f"\nCPU: {describe_cpu()}")
    print(f"{'benchmark':100s} {'ours':>10s} {'baseline':>10s} {'unit':>9s} {'ratio':>7s}")
    for r in rows:
        baseline = f"{r['baseline']:10.2f}" if "baseline" in r else f"{'':10s}"
        ratio = f"{r['ratio']:6.2f}x" if "ratio" in r else ""
        print(f"{r['row']:100s} {r['ours']:10.2f} {baseline} {r['unit']:>9s} {ratio:>7s}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--json", default="benchmarks/results/all.json")
    parser.add_argument("--smoke", action="store_true", help="a small subset, one epoch: checks the command only")
    args = parser.parse_args()
    rows, settings = run(args.source, args.smoke)
    print_table(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    result = {"cpu": describe_cpu(), "rows": rows, "settings": settings}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
