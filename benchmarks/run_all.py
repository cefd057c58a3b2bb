"""Run every benchmark on real data, print one table, write it as JSON.

    python -m benchmarks.run_all --source path/to/cifar-10-python.tar.gz [--repeats 3] [--seeds 42 43]
        [--json benchmarks/results/all.json]

It copies the pipeline's files into a scratch git + DVC repository whose
fetch.source is `--source`, runs the whole default pipeline there with `dvc repro`,
and then pairs each figure with a baseline measured in the same run on this machine.
Within a row the sides take turns (A B A B ..., `--repeats` rounds, 3 by default); the
row gives each side's median and spread and the ratio of the medians (how many times
better ours is), and the JSON every sample, the CPU and TensorFlow's settings:
  1. training throughput at batch 32: the train stage's loop vs plain model.fit on float32 arrays
  2. time to the tutorial recipe's final test accuracy: the quick recipe vs the tutorial's,
     one pair of whole trainings per seed (the first tutorial run is row 6's)
  3. preprocess of all images: the stage vs a plain single-process decode; the stage's peak RSS
  4. maximum stimuli of every conv filter: the visualize stage's method vs the tutorial's
  5. `dvc status` and a no-op `dvc repro` vs DVC's start-up (`dvc version`)
  6. the whole default `dvc repro` from scratch (fetch to visualize): one run
  7. where PyTorch is installed (an optional extra): our airbench94's training speed at airbench94's
     values vs airbench94's own PyTorch code (benchmarks/bench_airbench.py)
It takes about as long as four trainings (about an hour on a 2-core CPU).
`--smoke` runs every row on a small subset for one epoch: it checks the command, not the speed.
"""

import argparse
import io
import json
import statistics
import tarfile
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import bench_airbench, bench_time_to_accuracy, bench_train, bench_visualize
from benchmarks.interleave import MIN_REPEATS, interleaved, ratio, seconds
from benchmarks.recipes import QUICK_RECIPE, SEEDS
from benchmarks.workspace import (
    command_env,
    dvc_command,
    run_stage,
    scratch_repository,
    timed,
)
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import describe_cpu


def plain_decode(archive):
    """The straightforward way: stream the tar, decode each image with Pillow, one process."""
    images = []
    with tarfile.open(archive, "r|*") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith((".png", ".jpg", ".jpeg")):
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    images.append(np.asarray(image.convert("RGB")))
    return len(images)


def row(name, ours, baseline, unit, better="lower", **extra):
    """A table row from two sides' summaries (benchmarks/interleave.py): medians, spreads, ratio of medians."""
    return {
        "row": name,
        "ours": ours["median"],
        "baseline": baseline["median"],
        "unit": unit,
        "ratio": ratio(ours, baseline, better),
        "ours_spread": ours["spread"],
        "baseline_spread": baseline["spread"],
        "samples": {"ours": ours["samples"], "baseline": baseline["samples"]},
        **extra,
    }


# --smoke: every row on a subset, one epoch each, one round.
SMOKE_PREPROCESS = {"max_train_images": 500, "max_test_images": 200}
SMOKE_TRAIN = {"epochs": 1}
SMOKE = {"preprocess": SMOKE_PREPROCESS, "seed_cnn": SMOKE_TRAIN}  # --smoke's params, by section
SMOKE_THROUGHPUT = {"count": 320, "epochs": 1, "same_settings": False}
SMOKE_STIMULI = {"max_filters": 2}
SMOKE_ANCHOR = {"count": 128, "batch_size": 64, "widths": [8, 32, 32]}


def run(source, smoke=False, repeats=MIN_REPEATS, seeds=SEEDS, progress=print):
    """Every row; each with sides taking turns `repeats` rounds, but rows 2 and 6 (whole trainings):
    row 2 one tutorial/quick pair per seed, row 6 one dvc repro from scratch."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = scratch_repository(Path(tmp) / "repo", source, **(SMOKE if smoke else {})).path
        progress("6. dvc repro from scratch, default params ...")
        repro_s, repro_rss, _ = timed(dvc_command("repro"), root, command_env(), show_output=True)

        def dvc_seconds(*args):
            return lambda: timed(dvc_command(*args), root, command_env())[0]

        progress("5. dvc status and a no-op dvc repro against dvc version ...")
        dvc = interleaved(
            {"version": dvc_seconds("version"), "status": dvc_seconds("status"), "noop": dvc_seconds("repro")},
            repeats,
            progress,
        )

        progress("3. preprocess ...")
        peaks = []

        def preprocess_stage():
            wall, peak = run_stage("preprocess", root)
            peaks.append(peak)
            return wall

        preprocess = interleaved(
            {"ours": preprocess_stage, "baseline": seconds(lambda: plain_decode(Artifacts(root).raw_dataset))},
            repeats,
            progress,
        )

        progress("4. stimuli ...")
        from cifar.network.trained import load_trained_model

        model = load_trained_model(Artifacts(root).model)
        stimuli = bench_visualize.run(model, repeats=repeats, **(SMOKE_STIMULI if smoke else {}))

        progress("2. the quick recipe against the tutorial's, one pair per seed ...")
        quick = {**QUICK_RECIPE, **(SMOKE_TRAIN if smoke else {})}
        speedup = bench_time_to_accuracy.run_in(root, quick, seeds, progress)  # the repro trained the tutorial's

    progress("1. training throughput ...")
    throughput = bench_train.run(**(SMOKE_THROUGHPUT if smoke else {}), repeats=repeats)
    summaries = throughput["images_per_s"]
    rows.append(
        row(
            "1. train throughput, batch 32 (ours: stage loop; baseline: model.fit float32, TF defaults)",
            summaries["ours"],
            summaries["baseline"],
            "images/s",
            better="higher",
            same_settings_ratio=throughput.get("ratio_at_same_settings"),
        )
    )
    rows.append(time_to_accuracy_row(speedup))
    anchor = bench_airbench.run_if_available(repeats, progress, **(SMOKE_ANCHOR if smoke else {}))
    rows.append(
        row(
            "3. preprocess all images (ours: stage; baseline: streamed tar + Pillow, 1 process)",
            preprocess["ours"],
            preprocess["baseline"],
            "s",
            peak_rss_mb=round(max(peaks)),
        )
    )
    rows.append(
        row(
            "4. stimuli of all conv filters (ours: one compiled loop; baseline: the tutorial's)",
            stimuli["seconds"]["ours"],
            stimuli["seconds"]["tutorial"],
            "s",
            filters=stimuli["total"]["filters"],
        )
    )
    rows.append(row("5a. dvc status (baseline: dvc version)", dvc["status"], dvc["version"], "s"))
    rows.append(row("5b. dvc repro, nothing changed (baseline: dvc version)", dvc["noop"], dvc["version"], "s"))
    rows.append(
        {
            "row": "6. dvc repro from scratch, default params (fetch to visualize; one run)",
            "ours": round(repro_s, 1),
            "unit": "s",
            "peak_rss_mb": round(repro_rss),
        }
    )
    if anchor:
        rows.append(
            row(
                "7. airbench94 training at airbench94's values (ours: our port; baseline: airbench94's PyTorch code)",
                anchor["images_per_s"]["ours"],
                anchor["images_per_s"]["airbench94"],
                "images/s",
                better="higher",
            )
        )
    return rows, {"train": throughput["settings"], "stimuli": stimuli["settings"], "repeats": repeats}


def time_to_accuracy_row(speedup):
    """Row 2: the median over seeds of tutorial time / quick time to the tutorial's final accuracy."""
    seeds = speedup["seeds"]
    quick_s = [result["quick"]["seconds"] or result["quick"]["elapsed_s"] for result in seeds.values()]
    tutorial_s = [result["tutorial"]["seconds"] for result in seeds.values()]
    extra = {
        "seeds": {
            seed: {
                "target_accuracy": result["target_accuracy"],
                "tutorial_s": result["tutorial"]["seconds"],
                "quick_s": result["quick"]["seconds"],
                "quick_best_accuracy": round(max(result["quick"]["accuracy"]), 4),
                "ratio": result["ratio"],
            }
            for seed, result in seeds.items()
        }
    }
    if not speedup["all_seeds_reached"]:  # the quick recipe's whole run, where it never got there
        return {
            "row": "2. time to the tutorial's final accuracy: the quick recipe did not reach it for every seed",
            "ours": statistics.median(quick_s),
            "baseline": statistics.median(tutorial_s),
            "unit": "s",
            **extra,
        }
    return {
        "row": "2. time to the tutorial's final test accuracy (ours: quick recipe; baseline: tutorial recipe)",
        "ours": statistics.median(quick_s),
        "baseline": statistics.median(tutorial_s),
        "unit": "s",
        "ratio": speedup["ratio"],
        **extra,
    }


def print_table(rows):
    """Medians, with each side's spread ((max - min) / median) where it has several samples."""
    print(f"\nCPU: {describe_cpu()}")
    print(
        f"{'benchmark':100s} {'ours':>10s} {'spread':>7s} {'baseline':>10s} {'spread':>7s} {'unit':>9s} {'ratio':>7s}"
    )
    for r in rows:
        baseline = f"{r['baseline']:10.2f}" if "baseline" in r else f"{'':10s}"
        spreads = [
            f"{r[key]:6.0%}" if r.get(key) is not None else f"{'':6s}" for key in ("ours_spread", "baseline_spread")
        ]
        ratio_text = f"{r['ratio']:6.2f}x" if r.get("ratio") is not None else ""
        print(
            f"{r['row']:100s} {r['ours']:10.2f} {spreads[0]:>7s} {baseline} {spreads[1]:>7s} {r['unit']:>9s} "
            f"{ratio_text:>7s}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="dataset for fetch.source (archive or directory)")
    parser.add_argument("--json", default="benchmarks/results/all.json")
    parser.add_argument("--smoke", action="store_true", help="a small subset, one epoch: checks the command only")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS, help="rounds of each row's interleaved sides")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="row 2's train.seed values")
    args = parser.parse_args()
    rows, settings = run(args.source, args.smoke, args.repeats, args.seeds)
    print_table(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    result = {"cpu": describe_cpu(), "rows": rows, "settings": settings}
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
