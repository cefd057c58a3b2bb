"""The users' loop through the real `dvc` and `git` commands: compare commits, experiments, queues, remotes."""

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from cifar.core.artifacts import Artifacts
from tests.datagen import write_cifar_archive
from tests.dvc_repo import Repo, command_env, make_repo
from tests.helpers import wait_for
from tests.test_pipeline import STAGES, TINY, ran_stages
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
    old_metrics = read_json(Artifacts(repo.path).metrics)
    old_stimuli = read_json(Artifacts(repo.path).stimuli_record)
    repo.set_params(seed_cnn={"learning_rate": 0.001, "epochs": 2})
    assert ran_stages(repo.dvc("repro").stdout) == STAGES[STAGES.index("train") :]
    new_metrics = read_json(Artifacts(repo.path).metrics)

    metrics = json.loads(repo.dvc("metrics", "diff", "HEAD", "--all", "--json").stdout)
    accuracy = metrics["reports/metrics.json"]["accuracy"]
    assert accuracy["old"] == old_metrics["accuracy"] and accuracy["new"] == new_metrics["accuracy"]
    cat = metrics["reports/metrics.json"]["per_class.cat.recall"]
    assert cat["old"] == old_metrics["per_class"]["cat"]["recall"]
    stimulus = metrics["reports/stimuli.json"]["layers.leaky_re_lu_4.mean_activation"]
    assert stimulus["old"] == old_stimuli["layers"]["leaky_re_lu_4"]["mean_activation"]
    assert (
        stimulus["new"] == read_json(Artifacts(repo.path).stimuli_record)["layers"]["leaky_re_lu_4"]["mean_activation"]
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
    assert data["metrics"]["reports/metrics.json"]["data"] == read_json(Artifacts(reference.path).metrics)
    # ... and the training figures DVCLive logged for its last epoch
    assert data["metrics"]["reports/train/metrics.json"]["data"] == read_json(
        Artifacts(reference.path).train_reports / "metrics.json"
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
    checkpoint = lambda: any(Artifacts(killed.path).train_state.glob("*/epoch-0001.keras"))  # noqa: E731
    assert wait_for(checkpoint, process, timeout=300), "no checkpoint appeared"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    rerun = killed.dvc("exp", "run", *change)
    assert "resuming from" in rerun.stdout
    a, b = (
        read_json(Artifacts(killed.path).train_reports / "metrics.json"),
        read_json(Artifacts(reference.path).train_reports / "metrics.json"),
    )
    del a["train"]["elapsed_s"], b["train"]["elapsed_s"]  # wall time differs between any two runs
    assert a == b
    assert Artifacts(killed.path).metrics.read_bytes() == Artifacts(reference.path).metrics.read_bytes()
    assert_same_weights(weights_of(Artifacts(killed.path).model), weights_of(Artifacts(reference.path).model))


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
        read_json(Artifacts(repo.path).metrics) == chosen["revs"][0]["data"]["metrics"]["reports/metrics.json"]["data"]
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
    assert not Artifacts(clone_path).model.exists()
    clone.dvc("pull")
    assert Artifacts(clone_path).model.read_bytes() == Artifacts(repo.path).model.read_bytes()
    assert ran_stages(clone.dvc("repro").stdout) == []
    assert clone.dvc("status").stdout.strip() == "Data and pipelines are up to date."


def chromium():
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if browser is None:
        if os.environ.get("CI"):  # .ci/run installs it: in CI a missing browser is a failure
            pytest.fail("no chromium: the report cannot be drawn")
        pytest.skip("no chromium on this machine (.ci/run installs it)")
    return browser


def draw(page, profile):
    """The DOM of `page` (a file) after headless Chromium loaded it, its scripts run."""
    return subprocess.run(
        [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout


# After load, each image says whether it drew (a broken link has no natural size).
MARK_IMAGES = (
    "<script>window.addEventListener('load', () => document.querySelectorAll('img').forEach("
    "img => img.setAttribute('data-drawn', img.naturalWidth > 0 ? 'yes' : 'no')));</script>"
)


def render_as_a_code_host(markdown, page):
    """The Markdown as GitHub-flavoured HTML (markdown-it-py, tables on), written to `page`."""
    from markdown_it import MarkdownIt

    page.write_text(
        f"<html><body>{MarkdownIt('commonmark').enable('table').render(markdown)}{MARK_IMAGES}</body></html>"
    )
    return page


def assert_every_image_draws(dom, count):
    drawn = re.findall(r'<img [^>]*data-drawn="(yes|no)"', dom)
    assert drawn == ["yes"] * count, drawn


def test_report_compares_with_base_and_its_pages_draw(repo, tmp_path):
    old = read_json(Artifacts(repo.path).metrics)
    repo.set_params(seed_cnn={"learning_rate": 0.001})
    repo.dvc("repro")
    new = read_json(Artifacts(repo.path).metrics)
    with image_host(tmp_path / "assets") as (upload, url):
        repo.run(sys.executable, "-m", "stages.report", "--base", "HEAD", "--publish-with", str(upload))
        check_report(repo, tmp_path, old, new, url)


@contextlib.contextmanager
def image_host(folder):
    """A loopback web server for `folder`, and an upload command as CML's: copies a file there, prints its URL."""
    folder.mkdir()
    handler = functools.partial(QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    upload = folder.with_name("upload.sh")
    upload.write_text(f'#!/bin/sh\ncp "$1" "{folder}/" && echo "{url}/$(basename "$1")"\n')
    upload.chmod(0o755)
    try:
        yield upload, url
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_report(repo, tmp_path, old, new, url):
    report = Artifacts(repo.path).report.read_text()
    assert (
        report.splitlines()[2]
        == f"Compared with the base `HEAD` ({repo.git('rev-parse', '--short', 'HEAD').stdout.strip()})."
    )
    row = next(line for line in report.splitlines() if line.startswith("| accuracy |"))
    assert row == (
        f"| accuracy | {new['accuracy']:.4f} | {old['accuracy']:.4f} | {new['accuracy'] - old['accuracy']:+.4f} |"
    )
    assert "| seed_cnn.learning_rate | 0.0050 | 0.0010 |" in report
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 9 and all((repo.path / "reports" / path).is_file() for path in images)
    tables = ("| metric |", "| class |", "| layer |", "| corruption |", "| format |")
    headers = [line for line in report.splitlines() if line.startswith(tables)]
    assert sorted(header.split("|")[1].strip() for header in headers) == sorted(t.strip("| ") for t in tables)
    for header in headers:  # every table of metrics: this run, the base and the change, for each metric
        cells = [cell.strip() for cell in header.strip("|").split("|")][1:]
        assert cells[1::3] == ["base"] * (len(cells) // 3) and cells[2::3] == ["change"] * (len(cells) // 3)

    # As a code host draws the file in a clone: from reports/, every image loads by its relative path.
    dom = draw(render_as_a_code_host(report, repo.path / "reports/report.html"), tmp_path / "chromium")
    assert_every_image_draws(dom, len(images))
    changes = re.findall(r"<th[^>]*>change</th>", dom)  # the params table has a base column, no change
    # metrics 1 column, classes 2 (recall, F1), layers 2, corruptions 1, export formats 4
    assert len(re.findall(r"<th[^>]*>base</th>", dom)) == len(changes) + 1 and len(changes) == 1 + 2 + 2 + 1 + 4
    # As the pull-request comment shows it: away from the repository, every image from its uploaded URL.
    published = Artifacts(repo.path).published_report.read_text()
    assert f"]({url}/" in published and not re.search(rf"\]\((?!{re.escape(url)})", published)
    elsewhere = tmp_path / "comment"
    elsewhere.mkdir()
    assert_every_image_draws(
        draw(render_as_a_code_host(published, elsewhere / "comment.html"), tmp_path / "c2"), len(images)
    )

    page = Artifacts(repo.path).plots_page_dir / "index.html"
    assert "cdn.jsdelivr" not in page.read_text()  # Vega is inlined: the page draws offline
    # vega-embed draws each chart into an element of class "marks": one per data plot of dvc.yaml (loss,
    # accuracy, learning rate, confusion, reliability, accuracy per class, corruptions); images are <img>.
    charts = [plot for plot in yaml.safe_load((repo.path / "dvc.yaml").read_text())["plots"] if isinstance(plot, dict)]
    assert len(charts) == 7 and draw(page, tmp_path / "chromium").count('class="marks"') == len(charts)


def test_report_against_a_base_without_results_says_so_and_shows_this_run(repo):
    first = repo.git("rev-list", "--max-parents=0", "HEAD").stdout.strip()  # the project, before any run
    repo.run(sys.executable, "-m", "stages.report", "--base", first)
    report = Artifacts(repo.path).report.read_text()
    short = repo.git("rev-parse", "--short", first).stdout.strip()
    assert report.splitlines()[2] == (
        f"The base `{first}` ({short}) has no results yet (no `reports/metrics.json` there): "
        "this run's numbers and figures are shown alone."
    )
    accuracy = read_json(Artifacts(repo.path).metrics)["accuracy"]
    assert f"| accuracy | {accuracy:.4f} | – |  |" in report
    assert "![confusion matrix](figures/confusion_matrix.png)" in report
    repo.run(sys.executable, "-m", "stages.report", "--base", "no-such-branch")
    assert Artifacts(repo.path).report.read_text().splitlines()[2] == (
        "No base revision `no-such-branch` found: this run's numbers and figures are shown alone."
    )


def test_ci_restores_the_cache_and_reruns_only_what_changed(baseline, tmp_path):
    """The pull-request job: main's results in git, main's DVC cache restored, an evaluate param changed."""
    clone = Repo(tmp_path / "pull-request")
    baseline.run("git", "clone", "-q", str(baseline.path), str(clone.path))
    shutil.copytree(baseline.path / ".dvc/cache", clone.path / ".dvc/cache")  # actions/cache/restore
    clone.set_params(evaluate={"seed": 3})
    clone.dvc("checkout", "--allow-missing")  # make restore
    assert ran_stages(clone.dvc("repro").stdout) == ["evaluate"]  # make repro
    model = "models/model.keras"
    assert (clone.path / model).read_bytes() == (baseline.path / model).read_bytes()
