"""The users' loop through the real `dvc` and `git` commands: compare commits, experiments, queues, remotes."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.datagen import write_cifar_archive
from tests.dvc_repo import Repo, command_env, make_repo
from tests.helpers import wait_for
from tests.test_pipeline import TINY, ran_stages
from tests.test_train import assert_same_weights, weights_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A repo whose pipeline ran once on tiny data, with the results committed on main."""
    root = tmp_path_factory.mktemp("dvc_baseline")
    archive = root / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = make_repo(root / "repo", archive, **TINY)
    repo.dvc("repro")
    repo.commit("baseline run")
    return repo


@pytest.fixture
def repo(baseline, tmp_path):
    """A private copy of the baseline repo (its DVC cache included)."""
    shutil.copytree(baseline.path, tmp_path / "repo", symlinks=True)
    return Repo(tmp_path / "repo")


def read_json(path):
    return json.loads(path.read_text())


def test_metrics_params_and_plots_diff_between_commits(repo):
    old_metrics = read_json(repo.path / "reports/metrics.json")
    old_stimuli = read_json(repo.path / "reports/stimuli.json")
    repo.set_params(seed_cnn={"learning_rate": 0.001, "epochs": 2})
    assert ran_stages(repo.dvc("repro").stdout) == ["train", "evaluate", "visualize"]
    new_metrics = read_json(repo.path / "reports/metrics.json")

    metrics = json.loads(repo.dvc("metrics", "diff", "HEAD", "--all", "--json").stdout)
    accuracy = metrics["reports/metrics.json"]["accuracy"]
    assert accuracy["old"] == old_metrics["accuracy"] and accuracy["new"] == new_metrics["accuracy"]
    cat = metrics["reports/metrics.json"]["per_class.cat.recall"]
    assert cat["old"] == old_metrics["per_class"]["cat"]["recall"]
    stimulus = metrics["reports/stimuli.json"]["layers.leaky_re_lu_4.mean_activation"]
    assert stimulus["old"] == old_stimuli["layers"]["leaky_re_lu_4"]["mean_activation"]
    assert (
        stimulus["new"] == read_json(repo.path / "reports/stimuli.json")["layers"]["leaky_re_lu_4"]["mean_activation"]
    )

    params = json.loads(repo.dvc("params", "diff", "HEAD", "--json").stdout)["params.yaml"]
    lr, epochs = params["seed_cnn.learning_rate"], params["seed_cnn.epochs"]
    assert (lr["old"], lr["new"], epochs["old"], epochs["new"]) == (0.005, 0.001, 1, 2)

    plots = json.loads(repo.dvc("plots", "diff", "HEAD", "--json").stdout)["data"]
    for name in ("Loss", "Accuracy", "Confusion matrix"):  # both runs on one chart
        assert {row["rev"] for row in plots[name][0]["content"]["data"]["values"]} == {"HEAD", "workspace"}
    workspace_loss = [
        float(r["loss"])
        for r in plots["Loss"][0]["content"]["data"]["values"]
        if r["rev"] == "workspace" and r["filename"] == "train/loss.tsv"
    ]
    assert len(workspace_loss) == 2  # the two epochs of the new run
    images = plots["reports/figures/stimuli/leaky_re_lu_1.png"]
    assert {image["revisions"][0] for image in images} == {"HEAD", "workspace"}
    out = repo.path / "plots_html"
    repo.dvc("plots", "diff", "HEAD", "-o", str(out))
    page = (out / "index.html").read_text()
    assert "Confusion matrix" in page and "HEAD" in page and "workspace" in page

    # The same comparison between two branches: the new run committed on its own branch.
    repo.git("checkout", "-q", "-b", "lower-rate")
    repo.commit("lower learning rate")
    branches = json.loads(repo.dvc("metrics", "diff", "main", "lower-rate", "--json").stdout)
    accuracy = branches["reports/metrics.json"]["accuracy"]
    assert (accuracy["old"], accuracy["new"]) == (old_metrics["accuracy"], new_metrics["accuracy"])
    plots = json.loads(repo.dvc("plots", "diff", "main", "lower-rate", "--json").stdout)["data"]
    assert {row["rev"] for row in plots["Loss"][0]["content"]["data"]["values"]} == {"main", "lower-rate"}


def test_a_local_source_rewritten_in_place_makes_fetch_stale(repo, tmp_path):
    source = tmp_path / "mine.tar.gz"
    write_cifar_archive(source, train_per_batch=20)
    repo.set_params(fetch={"source": str(source)})
    repo.dvc("repro", "fetch")
    assert "fetch" not in repo.dvc("status", "fetch").stdout
    write_cifar_archive(source, train_per_batch=19)  # five images fewer, same path
    status = repo.dvc("status", "fetch").stdout
    assert "fetch:" in status and f"modified:           {source}" in status


def test_the_recipe_of_the_model_not_in_use_reruns_nothing(repo):
    repo.set_params(fast={"epochs": 3, "widths": [16, 32, 32]}, tta={"fast": 1})
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."
    repo.set_params(tta={"seed_cnn": 1})  # the model in use: evaluate reruns, train does not
    status = repo.dvc("status").stdout
    assert "evaluate:" in status and "train:" not in status


def test_the_model_is_a_dvc_artifact_that_gto_versions(repo):
    repo.git(
        "tag", "-a", "cifar-cnn@v1.0.0", "-m", "Registering artifact cifar-cnn version v1.0.0"
    )  # as `gto register`
    show = "import json, dvc.api; print(json.dumps(dvc.api.artifacts_show('cifar-cnn', version='v1.0.0', repo='.')))"
    shown = json.loads(repo.run(sys.executable, "-c", show).stdout)
    assert shown == {"rev": repo.git("rev-parse", "HEAD").stdout.strip(), "path": "models/model.keras"}


def test_exp_run_records_and_survives_a_kill(baseline, tmp_path):
    """`dvc exp run` records params and metrics; killed (SIGKILL, with its train stage) after the first
    checkpoint, the rerun resumes and matches the uninterrupted experiment."""
    change = ["-S", "train.seed=11", "-S", "seed_cnn.epochs=2"]
    reference = Repo(shutil.copytree(baseline.path, tmp_path / "reference", symlinks=True))
    reference.dvc("exp", "run", "-n", "two-epochs", *change)
    rows = json.loads(reference.dvc("exp", "show", "--json").stdout)
    experiment = next(e for row in rows for e in (row.get("experiments") or []) if e["name"] == "two-epochs")
    data = experiment["revs"][0]["data"]  # the experiment records its params and metrics
    assert data["params"]["params.yaml"]["data"]["seed_cnn"]["epochs"] == 2
    assert data["metrics"]["reports/metrics.json"]["data"] == read_json(reference.path / "reports/metrics.json")
    # ... and the training figures DVCLive logged for its last epoch
    assert data["metrics"]["reports/train/metrics.json"]["data"] == read_json(
        reference.path / "reports/train/metrics.json"
    )
    assert {"loss", "accuracy"} <= set(data["metrics"]["reports/train/metrics.json"]["data"]["train"])
    # ... and what `auto` resolved on this machine
    resolved = data["params"]["reports/train/params.yaml"]["data"]
    assert resolved["precision"] == "float32" and resolved["strategy"] == "one device" and resolved["cpu"]
    killed = Repo(shutil.copytree(baseline.path, tmp_path / "killed", symlinks=True))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "exp", "run", *change],
        cwd=killed.path,
        env=command_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes dvc and the stage it runs
    )
    checkpoint = lambda: any((killed.path / ".train_state").glob("*/epoch-0001.keras"))  # noqa: E731
    assert wait_for(checkpoint, process, timeout=300), "no checkpoint appeared"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    rerun = killed.dvc("exp", "run", *change)
    assert "resuming from" in rerun.stdout
    a, b = (
        read_json(killed.path / "reports/train/metrics.json"),
        read_json(reference.path / "reports/train/metrics.json"),
    )
    del a["train"]["elapsed_s"], b["train"]["elapsed_s"]  # wall time differs between any two runs
    assert a == b
    assert (killed.path / "reports/metrics.json").read_bytes() == (reference.path / "reports/metrics.json").read_bytes()
    assert_same_weights(
        weights_of(killed.path / "models/model.keras"), weights_of(reference.path / "models/model.keras")
    )


def test_queued_grid_runs_and_compares(repo):
    # A grid over an evaluate param: each queued run restores train's outputs from the cache.
    repo.dvc("exp", "run", "--queue", "-S", "evaluate.seed=1,2")
    repo.dvc("queue", "start", "--jobs", "1")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = repo.dvc("queue", "status").stdout
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(3)
    assert status.count("Success") == 2, status
    rows = json.loads(repo.dvc("exp", "show", "--json").stdout)
    runs = [exp["revs"][0]["data"] for row in rows for exp in (row.get("experiments") or [])]
    seeds = sorted(run["params"]["params.yaml"]["data"]["evaluate"]["seed"] for run in runs)
    assert seeds == [1, 2]
    assert all("accuracy" in run["metrics"]["reports/metrics.json"]["data"] for run in runs)

    # Keep one: `dvc exp apply` brings its params and results into the workspace, then commit.
    chosen = next(
        exp
        for row in rows
        for exp in (row.get("experiments") or [])
        if exp["revs"][0]["data"]["params"]["params.yaml"]["data"]["evaluate"]["seed"] == 2
    )
    repo.dvc("exp", "apply", chosen["name"])
    assert yaml.safe_load((repo.path / "params.yaml").read_text())["evaluate"]["seed"] == 2
    assert (
        read_json(repo.path / "reports/metrics.json")
        == chosen["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]
    )
    repo.commit(f"Adopt {chosen['name']}")
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."
    assert repo.git("status", "--porcelain").stdout == ""


def test_share_through_a_local_remote(repo, tmp_path):
    storage = tmp_path / "storage"
    repo.dvc("remote", "add", "-d", "shared", str(storage))
    repo.commit("add remote")
    repo.dvc("push")
    clone_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone_path)], check=True)
    clone = Repo(clone_path)
    assert not (clone_path / "models/model.keras").exists()
    clone.dvc("pull")
    assert (clone_path / "models/model.keras").read_bytes() == (repo.path / "models/model.keras").read_bytes()
    assert ran_stages(clone.dvc("repro").stdout) == []
    assert clone.dvc("status").stdout.strip() == "Data and pipelines are up to date."


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_report_compares_with_base_and_its_html_draws(repo):
    old = read_json(repo.path / "reports/metrics.json")
    repo.set_params(seed_cnn={"learning_rate": 0.001})
    repo.dvc("repro")
    new = read_json(repo.path / "reports/metrics.json")
    repo.run(sys.executable, "-m", "stages.report", "--base", "HEAD")
    report = (repo.path / "reports/report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| accuracy |"))
    assert row == (
        f"| accuracy | {new['accuracy']:.4f} | {old['accuracy']:.4f} | {new['accuracy'] - old['accuracy']:+.4f} |"
    )
    assert "| seed_cnn.learning_rate | 0.0050 | 0.0010 |" in report
    images = [line[line.index("](") + 2 : -1] for line in report.splitlines() if line.startswith("![")]
    assert len(images) >= 9 and all((repo.path / "reports" / path).is_file() for path in images)

    page = repo.path / "reports/plots/index.html"
    assert "cdn.jsdelivr" not in page.read_text()  # Vega is inlined: the page draws offline
    browser = chromium()
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs it: in CI a missing browser is a failure
            pytest.fail("no chromium: the report page cannot be drawn")
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    dom = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={repo.path.parent / 'chromium'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    # vega-embed draws each chart into an element of class "marks": loss, accuracy, learning rate, confusion.
    assert dom.count('class="marks"') == 4
