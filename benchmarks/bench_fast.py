"""A fast model's whole pipeline, stage by stage, and one training epoch of each model.

    python -m benchmarks.bench_fast --source path/to/cifar-10-python.tar.gz [--model airbench94_muon | airbench94]
        [--set airbench94_muon.epochs=7 ...] [--json benchmarks/results/fast.json]

In a scratch git + DVC repository holding the pipeline's files, with train.model set to `--model`
(airbench94_muon, the fast default, or airbench94, its SGD recipe; and any --set overrides), it runs
`dvc repro` one stage at a time and reports each stage's wall time, the total, the test accuracy, the
model's params and its seconds per epoch. Then, on the same prepared data and machine, it trains the
tutorial's seed_cnn for one epoch: the baseline for the epoch-time ratio.
`--smoke` runs it all on a small subset, every model at its tiny recipe (benchmarks/recipes.py's TINY):
it checks the command, not the speed.
"""

import argparse
import json
import tempfile
from pathlib import Path

import yaml

from benchmarks.recipes import TINY
from benchmarks.workspace import (
    command_env,
    dvc_command,
    epoch_seconds,
    parse_override,
    pipeline_stages,
    run_stage,
    scratch_repository,
    set_params,
    timed,
)
from cifar.core.artifacts import Artifacts

# The models it runs: each but the tutorial's, which is the baseline.
FAST_MODELS = [name for name in TINY if name != "seed_cnn"]
DEFAULT_MODEL = "airbench94_muon"

SMOKE = {
    "preprocess": {"max_train_images": 300, "max_test_images": 100},
    **TINY,
    "visualize": {"iterations": 2},
    "robustness": {"max_images": 100},
    "export": {"representative_images": 50, "latency_runs": 5},
}


def run(source, model=DEFAULT_MODEL, overrides=(), smoke=False, progress=print):
    with tempfile.TemporaryDirectory(prefix="bench-fast-") as scratch:
        repo = scratch_repository(Path(scratch) / "repo", source, train={"model": model}, **(SMOKE if smoke else {}))
        root = repo.path
        for section, name, value in overrides:
            set_params(root, **{section: {name: value}})
        repo.commit(model)
        stage_s = {}
        for stage in pipeline_stages():
            progress(f"dvc repro {stage} ...")
            stage_s[stage] = round(timed(dvc_command("repro", "--single-item", stage), root, command_env())[0], 1)
            progress(f"  {stage_s[stage]} s")
        params = yaml.safe_load((root / "params.yaml").read_text())
        metrics = json.loads(Artifacts(root).metrics.read_text())
        last_epoch = json.loads((Artifacts(root).train_reports / "metrics.json").read_text())  # validation: no TTA
        model_epochs = epoch_seconds(root)

        progress("one epoch of seed_cnn on the same data ...")
        set_params(root, train={"model": "seed_cnn"})
        set_params(root, seed_cnn={"epochs": 1})
        run_stage("train", root)
        seed_epoch = epoch_seconds(root)[0]

    images = params["preprocess"]["max_train_images"] or 50_000
    model_epoch = sorted(model_epochs)[len(model_epochs) // 2]  # median: the first epoch also traces
    return {
        "model": model,
        "model_params": params[model],
        "stage_s": stage_s,
        "total_s": round(sum(stage_s.values()), 1),
        "test_accuracy": metrics["accuracy"],
        "test_ece": metrics["ece"],  # with the temperature, where calibration_images > 0
        "tta_level": params["tta"][model],
        "test_accuracy_without_tta": round(last_epoch["test"]["accuracy"], 4),
        "model_epoch_s": model_epochs,
        "seed_cnn_epoch_s": seed_epoch,
        "model_images_per_s": round(images / model_epoch, 1),
        "seed_cnn_images_per_s": round(images / seed_epoch, 1),
        "epoch_time_ratio_model_over_seed_cnn": round(model_epoch / seed_epoch, 2),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="CIFAR-10 archive or image folder")
    parser.add_argument("--model", choices=FAST_MODELS, default=DEFAULT_MODEL, help="train.model (default %(default)s)")
    parser.add_argument("--set", dest="overrides", action="append", type=parse_override, default=[])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="a tiny subset: checks the command, not the speed")
    args = parser.parse_args()
    result = run(args.source, args.model, args.overrides, args.smoke)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
