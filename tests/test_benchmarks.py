import json
import re
import statistics
import subprocess
import sys

import pytest
import yaml

from benchmarks import airbench_peer
from benchmarks.bench_time_to_accuracy import time_to
from benchmarks.interleave import interleaved, ratio
from benchmarks.recipes import AIRBENCH94_MUON_QUICK, AIRBENCH94_ORIGINAL, QUICK_RECIPE
from benchmarks.workspace import PROJECT, stage_env, timed
from tests.datagen import write_image_folder_archive


def test_time_to_accuracy_is_the_first_epoch_reaching_the_target():
    accuracy = [0.5, 0.71, 0.69, 0.72]
    elapsed = [10.0, 20.0, 30.0, 40.0]
    assert time_to(0.7, accuracy, elapsed) == (20.0, 2)
    assert time_to(0.72, accuracy, elapsed) == (40.0, 4)
    assert time_to(0.8, accuracy, elapsed) == (None, None)


def test_sides_take_turns_and_rows_compare_medians():
    calls = []
    samples = {"a": iter([3.0, 1.0, 2.0]), "b": iter([10.0, 30.0, 20.0])}

    def side(name):
        return lambda: calls.append(name) or next(samples[name])

    result = interleaved({"a": side("a"), "b": side("b")}, repeats=3, progress=lambda _: None)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert result["a"]["median"] == 2.0 and result["a"]["spread"] == 1.0  # (3 - 1) / 2
    assert result["b"]["samples"] == [10.0, 30.0, 20.0]
    assert ratio(result["a"], result["b"], "lower") == 10.0  # times: baseline / ours
    assert ratio(result["a"], result["b"], "higher") == 0.1  # rates: ours / baseline


def test_the_docs_give_the_benchmarked_quick_recipe():
    speed = (PROJECT / "docs/speed.md").read_text()
    line = next(line for line in speed.splitlines() if line.startswith("dvc exp run -n quick"))
    documented = dict(re.findall(r"-S seed_cnn\.(\w+)=(\S+)", line))
    assert documented == {key: str(value) for key, value in QUICK_RECIPE.items()}


def documented_line(path, start):
    """The one line of `path` (docs/fast-model.md, README.md) that starts with `start`, a `dvc exp run`."""
    (line,) = [line for line in (PROJECT / path).read_text().splitlines() if line.startswith(start)]
    return line


def documented_values(line, section):
    """{key: value} of a `dvc exp run` line's `-S <section>.key=value` settings, read as params.yaml would."""
    found = re.findall(rf"-S '?{section}\.(\w+)=([^\s']+)", line)  # quoted where a shell would glob
    return {key: yaml.safe_load(value) for key, value in found}


def test_the_docs_give_the_benchmarked_quickest_fast_recipe():
    line = documented_line("docs/fast-model.md", "dvc exp run -S train.model=airbench94_muon ")
    assert documented_values(line, "airbench94_muon") == AIRBENCH94_MUON_QUICK


def test_the_docs_and_readme_switch_to_the_sgd_recipe_with_its_model_name_alone():
    """The SGD recipe is airbench94's defaults, which tests/test_params.py checks are the recipe the docs
    measured: its line sets nothing but the model."""
    for path in ("docs/fast-model.md", "README.md"):
        line = documented_line(path, "dvc exp run -n sgd-recipe ")
        assert line == "dvc exp run -n sgd-recipe -S train.model=airbench94", path


def test_the_docs_give_airbench94_s_own_values():
    line = documented_line("docs/fast-model.md", "dvc exp run -n airbench94 ")
    assert "-S train.model=airbench94 " in line
    defaults = yaml.safe_load((PROJECT / "params.yaml").read_text())["airbench94"]
    assert {**defaults, **documented_values(line, "airbench94")} == {**defaults, **AIRBENCH94_ORIGINAL}


def test_a_commands_peak_rss_is_its_own_not_its_parents(tmp_path):
    """ru_maxrss survives fork and exec: a 400 MB parent must not show in a 60 MB command's peak."""
    parent = bytearray(400 * 2**20)
    parent[::4096] = b"x" * len(parent[::4096])  # touched: resident
    allocate = "b = bytearray({} * 2**20); b[::4096] = b'x' * len(b[::4096]); print('done')"
    small = timed([sys.executable, "-c", allocate.format(60)], cwd=tmp_path)
    large = timed([sys.executable, "-c", allocate.format(260)], cwd=tmp_path)
    assert small[2] == large[2] == "done\n"
    assert 60 <= small[1] < 200 and large[1] - small[1] == pytest.approx(200, abs=20)  # MB


def run_benchmark(module, *args):
    """`python -m benchmarks.<module> args...` from the project, which must succeed."""
    command = [sys.executable, "-m", f"benchmarks.{module}", *map(str, args)]
    result = subprocess.run(command, cwd=PROJECT, env=stage_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.mark.slow
def test_run_all_smoke_gives_every_row(tmp_path):
    """The benchmark command, end to end on a tiny dataset: a real dvc repro, both trainings, every baseline."""
    source = tmp_path / "images.tar"
    write_image_folder_archive(source, train=60, test=30)
    out = tmp_path / "all.json"
    run_benchmark("run_all", "--source", source, "--smoke", "--json", out, "--repeats", "2", "--seeds", "42", "7")
    rows = json.loads(out.read_text())["rows"]
    # row 7, airbench94's reference, where PyTorch and the pinned file are at hand (tests/test_bench_airbench.py)
    anchor = ["7"] if airbench_peer.torch_available() and airbench_peer.cached_reference() else []
    assert [r["row"].split(".")[0] for r in rows] == ["1", "2", "3", "4", "5a", "5b", "6", *anchor]
    if anchor:
        assert len(rows[-1]["samples"]["ours"]) == len(rows[-1]["samples"]["baseline"]) == 2
    for r in rows[:1] + rows[2:6] + rows[7:]:  # two samples a side, taking turns
        assert len(r["samples"]["ours"]) == len(r["samples"]["baseline"]) == 2
        assert_row_summarises_its_samples(r)
    assert sorted(rows[1]["seeds"]) == ["42", "7"]  # a tutorial/quick pair for each seed
    assert_time_to_accuracy_row_summarises_its_seeds(rows[1])
    # rows 5a and 5b share their baseline: `dvc version`, measured once per round between the two
    assert rows[4]["samples"]["baseline"] == rows[5]["samples"]["baseline"]
    # row 6, the whole dvc repro, trained the tutorial's recipe at params.yaml's seed (42) for row 2, and
    # so took longer than that training took to its final accuracy, and longer than a repro with nothing to do
    (repro,) = [r for r in rows if r["row"].startswith("6.")]
    assert repro["unit"] == "s" and repro["ours"] >= rows[1]["seeds"]["42"]["tutorial_s"] > 0
    assert repro["ours"] > rows[5]["ours"] and repro["peak_rss_mb"] > 0
    assert rows[3]["filters"] == 4 * 2  # seed_cnn's 4 conv layers, 2 filters each in a smoke run
    settings = json.loads(out.read_text())["settings"]
    assert "onednn" in json.dumps(settings) and settings["repeats"] == 2
    assert "cpu_features" in settings["train"]["ours"] and "cpu_features" in settings["stimuli"]


def assert_row_summarises_its_samples(r):
    """A row's figures are its samples' (benchmarks/interleave.py): each side's median and spread, and the
    ratio of the medians, baseline / ours for a time and ours / baseline for a rate (higher is better)."""
    for side in ("ours", "baseline"):
        samples = r["samples"][side]
        assert all(sample > 0 for sample in samples), (r["row"], side, samples)
        # the JSON rounds the samples and the median to 4 decimals (5e-5 each: some samples are 0.01 s) ...
        median = statistics.median(samples)
        assert r[side] == pytest.approx(median, abs=1.01e-4), (r["row"], side)
        # ... and the spread, (max - min) / median of the unrounded samples, to 3: what those roundings allow
        spread = (max(samples) - min(samples)) / median
        allowed = 5e-4 + (1e-4 + 5e-5 * spread) / median + 1e-9
        assert r[f"{side}_spread"] == pytest.approx(spread, abs=allowed), (r["row"], side)
    assert r["unit"] in ("s", "images/s"), r["row"]
    better = r["baseline"] / r["ours"] if r["unit"] == "s" else r["ours"] / r["baseline"]
    assert r["ratio"] == pytest.approx(better, abs=5.1e-3), r["row"]  # rounded to 2 decimals


def assert_time_to_accuracy_row_summarises_its_seeds(r):
    """Row 2 (benchmarks/run_all.py: time_to_accuracy_row): each seed's ratio is its tutorial time over its
    quick time, where the quick recipe reached the tutorial's final accuracy; the row's are their medians."""
    seeds = r["seeds"].values()
    for seed in seeds:
        assert seed["tutorial_s"] > 0 and 0 < seed["target_accuracy"] <= 1
        if seed["quick_s"] is None:  # never reached
            assert seed["ratio"] is None and seed["quick_best_accuracy"] <= seed["target_accuracy"]
        else:
            assert seed["quick_best_accuracy"] >= seed["target_accuracy"] - 1e-4  # both rounded to 4 decimals
            # the ratio is of the unrounded seconds, rounded to 0.01; the seconds are rounded to 0.1 (a
            # smoke run's few seconds: a few percent)
            ratio = seed["tutorial_s"] / seed["quick_s"]
            rounding = 5.1e-3 + ratio * (0.05 / seed["tutorial_s"] + 0.05 / seed["quick_s"])
            assert seed["ratio"] == pytest.approx(ratio, abs=rounding)
    assert r["baseline"] == pytest.approx(statistics.median(seed["tutorial_s"] for seed in seeds))
    reached = all(seed["quick_s"] is not None for seed in seeds)
    assert ("did not reach" in r["row"]) == (not reached), r["row"]
    if reached:
        assert r["ours"] == pytest.approx(statistics.median(seed["quick_s"] for seed in seeds))
        assert r["ratio"] == pytest.approx(statistics.median(seed["ratio"] for seed in seeds))
    else:  # the quick recipe's whole training time, which the JSON does not hold apart
        assert "ratio" not in r and r["ours"] > 0


@pytest.mark.parametrize(
    "study",
    ["bench_precision", "bench_fast_ablation", "bench_like_for_like", "bench_holdout_cost", "bench_conv_directions"],
)
def test_each_study_still_runs_as_a_command(study):
    """The one-off studies live apart (benchmarks/studies/) and still import and parse their arguments."""
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.studies.{study}", "--help"],
        cwd=PROJECT,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "--json" in result.stdout  # every study can write its results for docs/speed.md


def test_the_benchmarks_time_every_stage_of_dvc_yaml():
    from benchmarks.workspace import pipeline_stages

    assert pipeline_stages() == list(yaml.safe_load((PROJECT / "dvc.yaml").read_text())["stages"])
    assert {"robustness", "export"} <= set(pipeline_stages())


def test_like_for_like_cuts_the_training_set_and_summarises_paired_seeds(tmp_path):
    import numpy as np

    from benchmarks.studies.bench_like_for_like import subset_data, summary

    source = tmp_path / "prepared"
    source.mkdir()
    np.save(source / "x_train.npy", np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1))
    np.save(source / "y_train.npy", np.arange(50))
    np.save(source / "x_test.npy", np.zeros((7, 1, 1, 1), np.uint8))
    (source / "classes.json").write_text("[]")
    subset_data(source, tmp_path / "cut", 20, seed=0)
    kept = np.load(tmp_path / "cut/y_train.npy")
    assert len(kept) == 20 and len(set(kept)) == 20 and list(kept) != sorted(kept)  # a random order
    np.testing.assert_array_equal(np.load(tmp_path / "cut/x_train.npy")[:, 0, 0, 0], kept)
    assert len(np.load(tmp_path / "cut/x_test.npy")) == 7  # the whole test set
    np.save(source / "y_test.npy", np.arange(7))
    subset_data(source, tmp_path / "cut-test", 0, seed=0, test_images=3)
    assert len(np.load(tmp_path / "cut-test/y_train.npy")) == 50
    tested = np.load(tmp_path / "cut-test/y_test.npy")
    assert len(tested) == 3 and list(tested) == sorted(tested) and len(np.load(tmp_path / "cut-test/x_test.npy")) == 3
    rows = [
        {
            "airbench94": {"accuracy_tta": a, "accuracy": a - 0.01, "train_s": 10.0},
            "ours": {"accuracy_tta": o, "accuracy": o - 0.02, "train_s": 12.0},
        }  # fmt: skip
        for a, o in ((0.80, 0.81), (0.82, 0.82), (0.78, 0.80))
    ]
    result = summary(rows)
    assert result["airbench94_accuracy_tta"] == {"mean": 0.8, "std": 0.02}
    assert result["difference_accuracy_tta"]["mean"] == pytest.approx(0.01)
    assert result["difference_accuracy"]["mean"] == pytest.approx(0.0)
    assert result["difference_accuracy_tta"]["std"] == pytest.approx(statistics.stdev([0.01, 0.0, 0.02]), abs=1e-4)
    # our recipe at its own values beside them, paired with the peer; without the peer, no differences
    for row, own in zip(rows, (0.83, 0.85, 0.81)):  # the peer (0.80, 0.82, 0.78) + 0.03
        row["ours_defaults"] = {"accuracy_tta": own, "accuracy": own, "train_s": 8.0}
    result = summary(rows)
    assert result["difference_ours_defaults_accuracy_tta"]["mean"] == pytest.approx(0.03)
    assert result["difference_accuracy_tta"]["mean"] == pytest.approx(0.01)  # "ours" unchanged
    assert result["ours_defaults_train_s"] == {"mean": 8.0, "std": 0.0}
    alone = summary([{"seed": 0, "ours_defaults": rows[0]["ours_defaults"]}])
    assert set(alone) == {"ours_defaults_accuracy_tta", "ours_defaults_accuracy", "ours_defaults_train_s"}


def test_holdout_cost_is_each_seed_s_held_out_minus_all():
    from benchmarks.studies.bench_holdout_cost import paired_cost

    def side(accuracy, ece):
        return {"accuracy": accuracy, "accuracy_without_tta": accuracy - 0.01, "ece": ece, "nll": 2 * ece}

    pairs = [
        {"all": side(0.80, 0.05), "held_out": side(0.79, 0.02)},
        {"all": side(0.82, 0.04), "held_out": side(0.82, 0.01)},
    ]
    cost = paired_cost(pairs)
    assert cost["accuracy"]["mean"] == pytest.approx(-0.005)
    assert cost["accuracy"]["std"] == pytest.approx(statistics.stdev([-0.01, 0.0]), abs=1e-4)
    assert cost["ece"] == {"mean": pytest.approx(-0.03), "std": pytest.approx(0.0)}
    assert cost["nll"]["mean"] == pytest.approx(-0.06)


@pytest.mark.slow
def test_holdout_cost_trains_each_model_with_every_image_and_with_some_held_out(tmp_path):
    """The command end to end on a tiny dataset: each model twice, the temperature only where images were held out."""
    source = tmp_path / "images.tar"
    write_image_folder_archive(source, train=60, test=30)
    out = tmp_path / "holdout.json"
    tiny = ["train.precision=float32", "seed_cnn.epochs=1", "seed_cnn.batch_size=16", "airbench94_muon.epochs=1"]
    tiny += ["airbench94_muon.batch_size=16", "airbench94_muon.widths=[8,16,16]"]
    settings = [arg for setting in tiny for arg in ("--set", setting)]
    run_benchmark(
        "studies.bench_holdout_cost", "--source", source, "--images", "10", "--seeds", "7", "--json", out, *settings
    )
    models = json.loads(out.read_text())["models"]
    assert sorted(models) == ["airbench94_muon", "seed_cnn"]  # its default --models
    assert models["airbench94_muon"]["recipe"] == {"epochs": 1, "batch_size": 16, "widths": [8, 16, 16]}
    for row in models.values():
        (pair,) = row["pairs"]
        assert pair["seed"] == 7
        assert pair["all"]["temperature"] == 1.0 and pair["held_out"]["temperature"] != 1.0
        assert pair["all"]["ece_without_temperature"] == pair["all"]["ece"]
        held_minus_all = pair["held_out"]["accuracy"] - pair["all"]["accuracy"]
        assert row["cost"]["accuracy"]["mean"] == pytest.approx(held_minus_all, abs=1e-4)


@pytest.mark.slow
def test_the_fast_pipeline_benchmark_runs_every_stage_of_a_muon_trained_model(tmp_path):
    """bench_fast end to end on a tiny dataset with its default model, airbench94_muon, at its tiny recipe:
    every stage of dvc.yaml (its temperature, evaluate's Grad-CAM, robustness, the exports, the stimuli) on
    a Muon-trained model, each stage timed, the figures the scratch repository's own."""
    from benchmarks.recipes import TINY
    from benchmarks.workspace import pipeline_stages

    source = tmp_path / "images.tar"
    write_image_folder_archive(source, train=300, test=100)  # the smoke run's subset sizes
    out = tmp_path / "fast.json"
    run_benchmark("bench_fast", "--source", source, "--smoke", "--json", out, "--set", "train.precision=float32")
    result = json.loads(out.read_text())
    assert result["model"] == "airbench94_muon" and result["tta_level"] == 2
    params = result["model_params"]
    assert {key: params[key] for key in TINY["airbench94_muon"]} == TINY["airbench94_muon"]
    assert params["filter_lr"] > 0  # Muon's section, its other keys params.yaml's
    assert list(result["stage_s"]) == pipeline_stages() and all(s > 0 for s in result["stage_s"].values())
    assert result["total_s"] == pytest.approx(sum(result["stage_s"].values()), abs=0.2)
    assert 0 <= result["test_accuracy"] <= 1 and 0 <= result["test_ece"] <= 1
    assert len(result["model_epoch_s"]) == params["epochs"]


def test_predict_folder_benchmark_smoke(tmp_path):
    """Both sides classify every generated photo (the benchmark checks each side's row count), and its table's
    figures are its samples'."""
    out = tmp_path / "predict.json"
    run_benchmark("bench_predict_folder", "--counts", "6", "12", "--repeats", "1", "--json", out)
    result = json.loads(out.read_text())
    assert [row["photos"] for row in result["rows"]] == [6, 12]
    for row in result["rows"]:
        for side in ("ours", "baseline"):
            (seconds,) = row["seconds"][side]["samples"]
            assert row["images_per_s"][side] == round(row["photos"] / seconds, 1)
            assert row["peak_rss_mb"][side] == round(max(row["rss_mb"][side])) > 0
        assert row["speed_ratio"] == round(row["seconds"]["baseline"]["median"] / row["seconds"]["ours"]["median"], 2)
    growth = result["rss_growth"]["ours"]
    assert growth == round(result["rows"][1]["peak_rss_mb"]["ours"] / result["rows"][0]["peak_rss_mb"]["ours"], 2)


def test_the_step_profile_sorts_real_op_names_into_their_kinds():
    from benchmarks.profile_step import kind_of

    scope = "StatefulPartitionedCall/gradient_tape/airbench94_muon_1"
    conv = f"{scope}/block2b_conv_1/convolution"
    cases = {
        (f"{conv}/Conv2DBackpropFilter", "_MklNativeConv2DBackpropFilter"): "conv backward (filters)",
        (f"{conv}/Conv2DBackpropInput", "_MklNativeConv2DBackpropInput"): "conv backward (inputs)",
        ("StatefulPartitionedCall/airbench94_muon_1/block1a_conv_1/convolution", "_MklNativeConv2D"): "conv forward",
        ("StatefulPartitionedCall/airbench94_muon_1/block1a_gelu_1/Gelu/Erfc", "Erfc"): "activations",
        ("StatefulPartitionedCall/gradient_tape/Sigmoid", "Sigmoid"): "activations",  # SiLU's gradient, no layer
        (f"{scope}/block1a_bn_1/moments/mean", "Mean"): "BatchNorm",
        ("StatefulPartitionedCall/airbench94_muon_1/block1a_bn_1/Cast", "Cast"): "casts float32/bfloat16",
        ("StatefulPartitionedCall/airbench_muon/newton_schulz_3/MatMul", "_MklMatMul"): "Newton-Schulz",
        ("StatefulPartitionedCall/airbench_muon/newton_schulz_3/Cast", "Cast"): "Newton-Schulz",
        ("StatefulPartitionedCall/airbench_muon/add_31", "AddV2"): "optimizer (rest)",
        ("StatefulPartitionedCall/airbench94_muon_1/block2a_pool_1/MaxPool", "_MklNativeMaxPool"): "pooling",
        ("IteratorGetNext", "IteratorGetNext"): "input pipeline",
        ("AddN_14", "AddN"): "other",
    }
    assert {key: kind_of(*key, "airbench_muon") for key in cases} == cases


def test_the_step_profile_counts_the_step_s_arithmetic_and_shares_its_time(tmp_path):
    """At widths 8/16/16: every kind's share of the trace, summing to 1, and the step's arithmetic against a
    count by hand of airbench's net (the frozen whitening conv forward only, the rest forward and both
    backward passes)."""
    a, b, c, batch = 8, 16, 16, 32
    run_benchmark(
        "profile_step", "--precision", "float32", "--set", f"airbench94_muon.widths=[{a},{b},{c}]",
        "--set", f"airbench94_muon.batch_size={batch}", "--json", tmp_path / "p.json", "--text", tmp_path / "p.txt",
    )  # fmt: skip
    result = json.loads((tmp_path / "p.json").read_text())
    layers = [  # (output values per image, multiply-adds per output value, passes)
        (31 * 31 * 24, 2 * 2 * 3, 1),  # the whitening conv: frozen, on the input
        (31 * 31 * a, 9 * 24, 3),
        (15 * 15 * a, 9 * a, 3),
        (15 * 15 * b, 9 * a, 3),
        (7 * 7 * b, 9 * b, 3),
        (7 * 7 * c, 9 * b, 3),
        (3 * 3 * c, 9 * c, 3),
        (10, c, 3),  # the head
    ]
    by_hand = sum(2 * batch * outputs * fan_in * passes for outputs, fan_in, passes in layers)
    assert result["tflop_per_step"] * 1e12 == pytest.approx(by_hand, rel=1e-9)
    assert result["achieved_tflops"] == pytest.approx(result["tflop_per_step"] / result["step_s"], rel=1e-9)
    assert sum(result["share"].values()) == pytest.approx(1, abs=1e-9)
    for kind in ("conv forward", "conv backward (inputs)", "conv backward (filters)", "BatchNorm", "activations"):
        assert result["share"][kind] > 0, kind
    assert result["policy"] == "float32" and result["peak_tflops"]["bfloat16"] > 0
    table = (tmp_path / "p.txt").read_text()
    for kind, share in result["share"].items():  # the committed text says what the JSON holds
        assert re.search(rf"^\| {re.escape(kind)} \| {share:.1%} \|", table, re.M), kind


def test_the_step_ops_benchmark_trains_our_layers_against_keras_s_and_gives_the_ratio(tmp_path):
    run_benchmark(
        "bench_step_ops", "--precision", "float32", "--set", "airbench94_muon.widths=[8,16,16]",
        "--set", "airbench94_muon.batch_size=32", "--steps", "1", "--repeats", "1", "--json", tmp_path / "s.json",
    )  # fmt: skip
    result = json.loads((tmp_path / "s.json").read_text())
    layers, activations = result["layers"], result["activations"]
    assert "FusedBatchNormalization" in layers["ours"] and "FusedBatchNormalization" not in layers["keras"]
    assert "BatchNormalization" in layers["keras"] and "BatchNormalization" not in layers["ours"]
    # the whitening's GELU and six SiLUs, ours or Keras's (and the final softmax, Keras's on both sides)
    for side, module in (("ours", "cifar.network.layers."), ("keras", "keras.")):
        hidden = [name for name in activations[side] if not name.endswith(".softmax")]
        assert [name.rsplit(".", 1)[1] for name in hidden] == ["gelu", *["silu"] * 6], side
        assert all(name.startswith(module) for name in hidden), side
    timing = result["seconds_per_step"]
    assert [len(timing[side]["samples"]) for side in ("ours", "keras")] == [1, 1]
    assert result["speedup"] == round(timing["keras"]["median"] / timing["ours"]["median"], 2)
