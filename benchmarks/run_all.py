"""Run every benchmark on real data, print one table, write it as JSON.

    python -m benchmarks.run_all --source ../shared/data/cifar10-jpeg.tar.gz [--json benchmarks/results/all.json]

Each row pairs our figure with a baseline measured in the same run on the same
machine, and prints the ratio (how many times better ours is):
  1. training throughput at batch 32: the train stage's pipeline vs plain model.fit on float32 arrays
  3. preprocess of all images: the stage vs a plain single-process decode; peak RSS of preprocess and train
  4. maximum stimuli of every conv filter: the visualize stage's method vs the tutorial's
  5. `dvc status` and a no-op `dvc repro` on the project (when up to date) vs DVC start-up (`dvc version`)
(Row 2, time to the tutorial's accuracy, needs two full trainings: not run here.)
"""
import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

PROJECT = Path(__file__).resolve().parents[1]


def timed(command, cwd, env=None):
    """Wall seconds of a subprocess and the peak RSS (MB) of it and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024, result.stdout


def plain_decode(archive):
    """The straightforward way: stream the tar, decode each image with Pillow, one process."""
    images = []
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith((".png", ".jpg", ".jpeg")):
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    images.append(np.asarray(image.convert("RGB")))
    return len(images)


def workspace(source, root):
    """A scratch copy of params.yaml pointing at `source`, with the fetch stage run."""
    params = yaml.safe_load((PROJECT / "params.yaml").read_text())
    params["fetch"]["source"] = str(Path(source).resolve())
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def stage(name):
    return [sys.executable, "-m", f"stages.{name}"]


def stage_env():
    return {**os.environ, "PYTHONPATH": str(PROJECT)}


def row(name, ours, baseline, unit, better="lower", **extra):
    ratio = baseline / ours if better == "lower" else ours / baseline
    return {"row": name, "ours": round(ours, 3), "baseline": round(baseline, 3), "unit": unit,
            "ratio": round(ratio, 2), **extra}


def run(source, train_epochs=1):
    rows = []
    from benchmarks import bench_train, bench_visualize

    train = bench_train.run()
    rows.append(row("1. train throughput, batch 32 (ours: stage pipeline; baseline: model.fit float32)",
                    train["ours_images_per_s"], train["baseline_images_per_s"], "images/s", better="higher"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = workspace(source, root)
        timed(stage("fetch"), root, stage_env())
        wall, peak_pre, _ = timed(stage("preprocess"), root, stage_env())
        start = time.perf_counter()
        plain_decode(root / "data/raw/dataset")
        plain = time.perf_counter() - start
        rows.append(row("3. preprocess all images (ours: stage; baseline: streamed tar + Pillow, 1 process)",
                        wall, plain, "s", peak_rss_mb=round(peak_pre)))
        params["train"]["epochs"] = train_epochs
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        wall, peak_train, _ = timed(stage("train"), root, stage_env())
        rows.append({"row": f"3b. train stage peak RSS ({train_epochs} epoch, all images)",
                     "ours": round(peak_train), "unit": "MB", "wall_s": round(wall, 1)})

        import keras

        visualize = bench_visualize.run(keras.models.load_model(root / "models/model.keras"))["total"]
        rows.append(row("4. stimuli of every conv filter (ours: batched per layer; baseline: the tutorial's)",
                        visualize["ours_s"], visualize["tutorial_s"], "s", filters=visualize["filters"]))

    dvc = str(Path(sys.executable).parent / "dvc")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    startup = min(timed([dvc, "version"], PROJECT, env)[0] for _ in range(3))
    status_s, _, status = timed([dvc, "status"], PROJECT, env)
    rows.append(row("5a. dvc status (baseline: dvc version)", status_s, startup, "s"))
    if "up to date" in status:  # only then is `dvc repro` a no-op; otherwise it would run the pipeline
        repro_s = min(timed([dvc, "repro"], PROJECT, env)[0] for _ in range(3))
        rows.append(row("5b. dvc repro, nothing changed (baseline: dvc version)", repro_s, startup, "s"))
    else:
        print("the project's pipeline is not up to date: run `dvc repro` first to time a no-op repro")
    return rows


def print_table(rows):
    print(f"\n{'benchmark':96s} {'ours':>10s} {'baseline':>10s} {'unit':>9s} {'ratio':>7s}")
    for r in rows:
        baseline = f"{r['baseline']:10.2f}" if "baseline" in r else f"{'':10s}"
        ratio = f"{r['ratio']:6.2f}x" if "ratio" in r else ""
        print(f"{r['row']:96s} {r['ours']:10.2f} {baseline} {r['unit']:>9s} {ratio:>7s}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--train-epochs", type=int, default=1, help="epochs of the train-stage RSS run")
    parser.add_argument("--json", default="benchmarks/results/all.json")
    args = parser.parse_args()
    rows = run(args.source, args.train_epochs)
    print_table(rows)
    machine = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "python": platform.python_version()}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
