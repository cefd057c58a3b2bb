"""The users' loop through the real `dvc` and `git` commands: compare commits, experiments, queues, remotes."""

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from benchmarks.workspace import PROJECT, Repo, command_env, dvc_command
from cifar.core.artifacts import Artifacts
from cifar.core.cpu import CPUINFO_ENV
from cifar.network.trained import load_trained_model
from tests.datagen import FINE_CLASSES, cifar_c_arrays, write_cifar100_archive, write_cifar_archive, write_cifar_c
from tests.helpers import assert_same_weights, serving, serving_folder, wait_for, weights_of
from tests.pipeline_outputs import STAGES, committed_baseline, private_copy, ran_stages
from tests.servers import MotoS3Server, OpenSSHServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A repo whose pipeline ran once on tiny data, with the results committed on main."""
    return committed_baseline(tmp_path_factory.mktemp("dvc_baseline"))[0]


@pytest.fixture
def repo(baseline, tmp_path):
    """A private copy of the baseline repo (its DVC cache included)."""
    return private_copy(baseline, tmp_path)


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
    # every chart: both runs, each drawing exactly the rows of its own revision's files
    specs = {name: plots[name][0]["content"] for name in data_plots(repo)}
    assert_charts_draw_each_revisions_files(specs, repo, ["HEAD", "workspace"])
    workspace_loss = [
        float(r["loss"])
        for r in plots["Loss"][0]["content"]["data"]["values"]
        if r["rev"] == "workspace" and r["filename"] == "train/loss.tsv"
    ]
    assert len(workspace_loss) == 2  # the two epochs of the new run
    # every image: one per run, the bytes of that revision's file
    images = {name: entries for name, entries in plots.items() if name.endswith(".png")}
    assert len(images) >= 10 and "reports/figures/stimuli/leaky_re_lu_1.png" in images
    for name, entries in images.items():
        assert sorted(image["revisions"][0] for image in entries) == ["HEAD", "workspace"], name
        for image in entries:
            assert Path(image["url"]).read_bytes() == file_at(repo, image["revisions"][0], name), (name, image)
    out = repo.path / "plots_html"
    repo.dvc("plots", "diff", "HEAD", "-o", str(out))
    assert_charts_draw_each_revisions_files(
        page_specs((out / "index.html").read_text(), repo), repo, ["HEAD", "workspace"]
    )

    # The same comparison between two branches: the new run committed on its own branch.
    repo.git("checkout", "-q", "-b", "lower-rate")
    repo.commit("lower learning rate")
    branches = json.loads(repo.dvc("metrics", "diff", "main", "lower-rate", "--json").stdout)
    accuracy = branches["reports/metrics.json"]["accuracy"]
    assert (accuracy["old"], accuracy["new"]) == (old_metrics["accuracy"], new_metrics["accuracy"])
    plots = json.loads(repo.dvc("plots", "diff", "main", "lower-rate", "--json").stdout)["data"]
    specs = {name: plots[name][0]["content"] for name in data_plots(repo)}
    assert_charts_draw_each_revisions_files(specs, repo, ["main", "lower-rate"])


def file_at(repo, rev, path):
    """The bytes of `path` at revision `rev` of `repo`, as git holds them; "workspace": the file on disk.
    Every report and plot file is in git (dvc.yaml: cache false), so git alone says what each revision has."""
    if rev == "workspace":
        return (repo.path / path).read_bytes()
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo.path, capture_output=True, check=True).stdout


def data_plots(repo):
    """dvc.yaml's data plots (not the images): {title: definition}."""
    plots = yaml.safe_load((repo.path / "dvc.yaml").read_text())["plots"]
    return {name: definition for plot in plots if isinstance(plot, dict) for name, definition in plot.items()}


def page_specs(page, repo):
    """{plot name: the Vega-Lite spec} that a page written by `dvc plots diff -o` embeds, one per data plot."""
    embedded = {}
    for match in re.finditer(r'<div id = "([^"]+)">\s*<script type = "text/javascript">\s*var spec = ', page):
        embedded[match[1]], _ = json.JSONDecoder().raw_decode(page, match.end())
    # each chart's element is named after the plot, punctuation and spaces made underscores (dvc_render)
    specs = {name: embedded.pop(re.sub(r"[^\w-]", "_", name)) for name in data_plots(repo)}
    assert not embedded, embedded.keys()
    return specs


# What DVC adds to each row of a file it draws: the revision, which file, which y field and its value.
DVC_FIELDS = {"rev", "filename", "field", "dvc_inferred_y_value"}


def assert_charts_draw_each_revisions_files(specs, repo, revisions):
    """Each chart of dvc.yaml in `specs` ({name: Vega-Lite spec}) holds, for each of `revisions` (as DVC
    names them: a git revision, or "workspace"), exactly the rows of that revision's files (CSV or TSV,
    read through git), once per y field of the chart, and nothing else."""
    for name, definition in data_plots(repo).items():
        spec = specs[name]
        files = {path: [fields] if isinstance(fields, str) else fields for path, fields in definition["y"].items()}
        expected = {}
        for rev in revisions:
            for path, fields in files.items():
                text = file_at(repo, rev, path).decode()
                rows = list(csv.DictReader(io.StringIO(text), delimiter="\t" if path.endswith(".tsv") else ","))
                assert rows, (rev, path)
                expected.update({(rev, path, field): rows for field in fields})
        drawn = {}
        for value in spec["data"]["values"]:
            # `filename` (where the chart has several files): the path's end that tells them apart
            paths = [p for p in files if len(files) == 1 or f"/{p}".endswith(f"/{value['filename']}")]
            assert len(paths) == 1, (name, value)
            (field,) = files[paths[0]] if len(files[paths[0]]) == 1 else [value["field"]]
            row = {key: column for key, column in value.items() if key not in DVC_FIELDS}
            if "dvc_inferred_y_value" in value:
                assert value["dvc_inferred_y_value"] == row[field], (name, value)
            drawn.setdefault((value["rev"], paths[0], field), []).append(row)
        assert drawn == expected, name
        if (spec.get("encoding") or {}).get("x"):  # the confusion template lays out its own axes
            assert spec["encoding"]["x"]["field"] == definition["x"], name
            assert sorted(spec["encoding"]["color"]["scale"]["domain"]) == sorted(revisions), name


def test_a_local_source_rewritten_in_place_makes_fetch_stale(repo, tmp_path):
    source = tmp_path / "mine.tar.gz"
    write_cifar_archive(source, train_per_batch=20)
    repo.set_params(fetch={"source": str(source)})
    repo.dvc("repro", "fetch")
    assert "fetch" not in repo.dvc("status", "fetch").stdout
    write_cifar_archive(source, train_per_batch=19)  # five images fewer, same path
    status = repo.dvc("status", "fetch").stdout
    assert "fetch:" in status and f"modified:           {source}" in status


def test_exp_run_on_the_published_cifar_10_c_reruns_robustness_alone(repo, tmp_path):
    """The documented way, `dvc exp run -S robustness.source=data/sources/cifar-10-c.yaml`, its descriptor aimed
    at a copy of CIFAR-10-C.tar in the published layout on a loopback server; DVC tracks the descriptor's text;
    `dvc metrics diff` sets the published figures beside the generated ones; back to the default, robustness
    alone reruns and gives the committed record again."""
    artifacts = Artifacts(repo.path)
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)  # CIFAR-10's class order (datagen's)
    tar = write_cifar_c(tmp_path / "CIFAR-10-C.tar", cifar_c_arrays(x_test, y_test))
    env = {"KERAS_HOME": str(tmp_path / "keras_home")}
    descriptor = repo.path / "data/sources/cifar-10-c.yaml"
    generated = read_json(artifacts.robustness_record)
    with serving(tar) as (handler, url):
        checksum = hashlib.md5(tar.read_bytes()).hexdigest()
        descriptor.write_text(yaml.safe_dump({"url": url, "checksum": f"md5:{checksum}"}))
        repo.commit("CIFAR-10-C on a loopback server")
        run = repo.dvc("exp", "run", "-S", "robustness.source=data/sources/cifar-10-c.yaml", env=env)
    assert ran_stages(run.stdout) == ["robustness"] and handler.requests == 1
    assert "[1/95] gaussian_noise severity 1: accuracy" in run.stdout and "[95/95] saturate severity 5" in run.stdout
    record = read_json(artifacts.robustness_record)
    assert record["source"] == "data/sources/cifar-10-c.yaml" and record["images_per_severity"] == len(y_test)
    assert len(record["corruptions"]) == 19 and record["clean_accuracy"] == generated["clean_accuracy"]
    diff = json.loads(repo.dvc("metrics", "diff", "HEAD", "--all", "--json").stdout)["reports/robustness.json"]
    assert diff["mean_corruption_accuracy"]["old"] == generated["mean_corruption_accuracy"], diff
    assert diff["mean_benchmark_corruption_accuracy"]["new"] == record["mean_benchmark_corruption_accuracy"]
    assert diff["corruptions.frost.severity_5"]["new"] == record["corruptions"]["frost"]["severity_5"]
    # the descriptor's text is the dependency: another URL or checksum makes robustness, and it alone, stale
    descriptor.write_text(descriptor.read_text().replace(checksum, "0" * 32))
    status = repo.dvc("status").stdout
    assert "modified:           data/sources/cifar-10-c.yaml" in status
    assert [line for line in status.splitlines() if line.endswith(":") and not line.startswith("\t")] == ["robustness:"]
    back = repo.dvc("exp", "run", "-S", "robustness.source=data/sources/generated.yaml", env=env)
    assert ran_stages(back.stdout) == ["robustness"]
    assert read_json(artifacts.robustness_record) == generated


def test_exp_run_on_the_published_cifar_100_c_scores_a_cifar_100_model(repo, tmp_path):
    """A team on CIFAR-100 (fine labels): the pipeline on a CIFAR-100 archive, then the documented
    `dvc exp run -S robustness.source=data/sources/cifar-100-c.yaml`, its descriptor aimed at a copy of
    CIFAR-100-C.tar in the published layout on a loopback server; every accuracy against the model's own
    predictions of the served images."""
    archive = tmp_path / "cifar-100-python.tar.gz"
    write_cifar100_archive(archive)
    repo.set_params(fetch={"source": str(archive)}, preprocess={"labels": "fine"})
    repo.commit("CIFAR-100")
    repo.dvc("repro")
    artifacts = Artifacts(repo.path)
    assert artifacts.load_classes(artifacts.model_classes) == FINE_CLASSES  # the archive's meta order
    x_test, y_test = np.load(artifacts.x_test), np.load(artifacts.y_test)
    arrays = cifar_c_arrays(x_test, y_test)  # labels.npy: CIFAR-100's fine indices, official order
    tar = write_cifar_c(tmp_path / "CIFAR-100-C.tar", arrays, top="CIFAR-100-C")
    env = {"KERAS_HOME": str(tmp_path / "keras_home")}
    with serving(tar) as (handler, url):
        checksum = hashlib.md5(tar.read_bytes()).hexdigest()
        (repo.path / "data/sources/cifar-100-c.yaml").write_text(
            yaml.safe_dump({"url": url, "checksum": f"md5:{checksum}"})
        )
        repo.commit("CIFAR-100-C on a loopback server")
        run = repo.dvc("exp", "run", "-S", "robustness.source=data/sources/cifar-100-c.yaml", env=env)
    assert ran_stages(run.stdout) == ["robustness"] and handler.requests == 1
    record = read_json(artifacts.robustness_record)
    assert record["source"] == "data/sources/cifar-100-c.yaml" and record["images_per_severity"] == len(y_test)
    model = load_trained_model(artifacts.model)
    labels = arrays["labels.npy"]
    for name in record["corruptions"]:
        predicted = model.predict(arrays[f"{name}.npy"], batch_size=256, verbose=0).argmax(axis=1)
        right = (predicted == labels).reshape(5, len(y_test)).mean(axis=1)
        for severity in range(1, 6):
            assert record["corruptions"][name][f"severity_{severity}"] == pytest.approx(right[severity - 1], abs=1e-9)
    assert len(record["corruptions"]) == 19


def test_the_recipe_of_the_model_not_in_use_reruns_nothing(repo):
    repo.set_params(airbench94_muon={"epochs": 3, "widths": [16, 32, 32]}, tta={"airbench94_muon": 1})
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."
    repo.set_params(tta={"seed_cnn": 1})  # the model in use: evaluate reruns, train does not
    status = repo.dvc("status").stdout
    assert "evaluate:" in status and "train:" not in status


def test_switching_recipe_is_one_word_that_trains_that_model_on_its_own_section(repo):
    run = repo.dvc("exp", "run", "-S", "train.model=airbench94", "train")
    assert ran_stages(run.stdout) == ["train"]
    lock = yaml.safe_load((repo.path / "dvc.lock").read_text())["stages"]["train"]["params"]["params.yaml"]
    assert set(lock) == {"train", "airbench94"} and lock["train"]["model"] == "airbench94"
    assert lock["airbench94"] == yaml.safe_load((repo.path / "params.yaml").read_text())["airbench94"]
    model = load_trained_model(Artifacts(repo.path).model)
    assert model.name == "airbench94" and model.get_layer("block3b_conv").filters == lock["airbench94"]["widths"][2]


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
    # `auto`, the default precision, which the baseline pins to float32: what it resolves to on this
    # machine is recorded, and the rerun resumes in it. On this CPU alone: no CIFAR_CPUINFO, no GPU.
    change = ["-S", "train.seed=11", "-S", "seed_cnn.epochs=2", "-S", "train.precision=auto"]
    this_cpu = {CPUINFO_ENV: "", "CUDA_VISIBLE_DEVICES": ""}
    reference = Repo(shutil.copytree(baseline.path, tmp_path / "reference", symlinks=True))
    reference.dvc("exp", "run", "-n", "two-epochs", *change, env=this_cpu)
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
    # ... and what `auto` resolved on this machine: as its own /proc/cpuinfo says it must
    assert data["params"]["params.yaml"]["data"]["train"]["precision"] == "auto"
    resolved = data["params"]["reports/train/params.yaml"]["data"]
    assert resolved == yaml.safe_load((Artifacts(reference.path).train_reports / "params.yaml").read_text())
    model, flags = cpu_model_and_flags(Path("/proc/cpuinfo").read_text())
    units = [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]
    assert resolved["precision"] == ("mixed_bfloat16" if units else "float32")
    assert resolved["cpu"] == f"{model}; bfloat16 units: {', '.join(units) if units else 'none (emulated)'}"
    assert resolved["strategy"] == "one device"
    killed = Repo(shutil.copytree(baseline.path, tmp_path / "killed", symlinks=True))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dvc"), "exp", "run", *change],
        cwd=killed.path,
        env={**command_env(), **this_cpu},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes dvc and the stage it runs
    )
    checkpoint = lambda: any(Artifacts(killed.path).train_state.glob("*/epoch-0001.keras"))  # noqa: E731
    assert wait_for(checkpoint, process, timeout=300), "no checkpoint appeared"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()

    rerun = killed.dvc("exp", "run", *change, env=this_cpu)
    assert "resuming from" in rerun.stdout
    a, b = (
        read_json(Artifacts(killed.path).train_reports / "metrics.json"),
        read_json(Artifacts(reference.path).train_reports / "metrics.json"),
    )
    del a["train"]["elapsed_s"], b["train"]["elapsed_s"]  # wall time differs between any two runs
    assert a == b
    assert Artifacts(killed.path).metrics.read_bytes() == Artifacts(reference.path).metrics.read_bytes()
    assert_same_weights(weights_of(Artifacts(killed.path).model), weights_of(Artifacts(reference.path).model))


def cpu_model_and_flags(cpuinfo):
    """(model name, feature flags) of the first processor of a /proc/cpuinfo text (Linux on x86-64)."""
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields["model name"], set(fields["flags"].split())


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


# Remotes on real servers: OpenSSH's sshd and moto's S3 server on loopback (tests/servers.py), through the
# real plugins (dvc-ssh, dvc-s3) the lock installs. A plugin missing from the lock fails these, not skips.


@pytest.fixture
def ssh_server(tmp_path):
    server = OpenSSHServer(tmp_path / "sshd")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def s3_server():
    server = MotoS3Server()
    server.start()
    yield server
    server.close()


class Remote(SimpleNamespace):
    """How a repo reaches one server: the remote's URL and settings in .dvc/config (committed), the
    credentials in .dvc/config.local (each teammate's own, not committed), the environment of its commands."""

    def configure(self, repo, credentials=None):
        repo.dvc("remote", "add", "-d", "-f", "storage", self.url)
        for key, value in self.settings.items():
            repo.dvc("remote", "modify", "storage", key, value)
        for key, value in (credentials or self.credentials).items():
            repo.dvc("remote", "modify", "--local", "storage", key, value)

    def dvc(self, repo, *args, check=True):
        return repo.dvc(*args, env=self.env, check=check)


def ssh_remote(server):
    return Remote(
        url=server.url,
        settings={},
        credentials={"keyfile": str(server.root / "user_key")},
        env={"HOME": str(server.home)},
    )


def s3_remote(server):
    return Remote(
        url=f"s3://{server.bucket}/cifar10",
        settings={"endpointurl": server.endpoint},
        credentials={"access_key_id": server.keys[0], "secret_access_key": server.keys[1]},
        env={"AWS_EC2_METADATA_DISABLED": "true"},  # the credentials are the remote's, never the machine's
    )


REMOTES = {"ssh": ("ssh_server", ssh_remote), "s3": ("s3_server", s3_remote)}


@pytest.fixture(params=list(REMOTES))
def remote(request):
    fixture, make = REMOTES[request.param]
    server = request.getfixturevalue(fixture)
    return SimpleNamespace(kind=request.param, server=server, how=make(server))


def one_error_line(result):
    """The command failed with DVC's one ERROR line and no traceback; returns that line."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1, output
    return errors[0]


def test_share_through_a_real_remote_with_make_baseline_s_push(repo, tmp_path, remote):
    """docs/outputs.md's commands: the remote added and committed, `make baseline`'s push, a teammate's
    clone pulls everything and `dvc repro` has nothing to do."""
    how = remote.how
    how.configure(repo)
    repo.commit("add remote")
    shutil.copyfile(PROJECT / "Makefile", repo.path / "Makefile")  # its `push` target: baseline's first step
    pushed = repo.run("make", "-o", "install", "push", env=how.env)
    assert "pushed" in pushed.stdout + pushed.stderr, pushed.stdout + pushed.stderr
    assert how.dvc(repo, "status", "--cloud").stdout.strip().startswith("Cache and remote 'storage' are in sync")

    clone_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone_path)], check=True)
    clone = Repo(clone_path)
    for key, value in how.credentials.items():  # a teammate's own credentials
        clone.dvc("remote", "modify", "--local", "storage", key, value)
    assert not Artifacts(clone_path).model.exists()
    how.dvc(clone, "pull")
    assert Artifacts(clone_path).model.read_bytes() == Artifacts(repo.path).model.read_bytes()
    assert ran_stages(clone.dvc("repro").stdout) == []
    assert clone.dvc("status").stdout.strip() == "Data and pipelines are up to date."


def test_a_remote_down_or_refusing_the_credentials_is_one_error_line_and_loses_nothing(repo, remote):
    how = remote.how
    if remote.kind == "ssh":  # a key the server does not know; S3: the user's key id, another secret
        wrong, refusal = {"keyfile": str(remote.server.root / "stranger_key")}, "Permission denied"
    else:
        wrong = {"access_key_id": remote.server.keys[0], "secret_access_key": "not-the-secret"}
        refusal = "Forbidden"
    how.configure(repo, wrong)
    cache = sorted((path, path.stat().st_size) for path in (repo.path / ".dvc/cache").rglob("*") if path.is_file())
    assert refusal in one_error_line(how.dvc(repo, "push", check=False))
    remote.server.stop()
    how.configure(repo)
    down = one_error_line(how.dvc(repo, "push", check=False))
    assert re.search(r"connect|refused", down, re.IGNORECASE), down
    # nothing lost locally: the cache as it was, the workspace whole
    assert (
        sorted((path, path.stat().st_size) for path in (repo.path / ".dvc/cache").rglob("*") if path.is_file()) == cache
    )
    assert repo.dvc("status").stdout.strip() == "Data and pipelines are up to date."
    remote.server.start()
    how.dvc(repo, "push")  # the server back: the same command completes


def test_a_push_cut_off_by_the_server_going_down_completes_on_the_next_push(repo, tmp_path, remote):
    how = remote.how
    how.configure(repo)
    # enough data that the push is still running when the first file has landed on the server
    rng = np.random.default_rng(0)
    bulk = repo.path / "bulk"
    bulk.mkdir()
    for index in range(48):
        (bulk / f"part-{index:02d}.bin").write_bytes(rng.bytes(4 * 2**20))
    repo.dvc("add", "bulk")
    repo.commit("bulk data")

    def landed():
        if remote.kind == "ssh":
            return any(path.is_file() for path in remote.server.storage.rglob("*"))
        return remote.server.client().list_objects_v2(Bucket=remote.server.bucket).get("KeyCount", 0) > 0

    push = subprocess.Popen(
        dvc_command("push"),
        cwd=repo.path,
        env={**command_env(), **how.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert wait_for(landed, push, timeout=120, interval=0.01), "no file reached the server"
    remote.server.stop()
    output, _ = push.communicate(timeout=300)
    assert push.returncode != 0, f"the push ended before the server went down:\n{output}"
    assert "Traceback" not in output, output
    remote.server.start()
    how.dvc(repo, "push")
    assert how.dvc(repo, "status", "--cloud").stdout.strip().startswith("Cache and remote 'storage' are in sync")
    # nothing lost: a fresh clone pulls every file whole
    clone_path = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone_path)], check=True)
    clone = Repo(clone_path)
    for key, value in how.credentials.items():
        clone.dvc("remote", "modify", "--local", "storage", key, value)
    how.dvc(clone, "pull", "bulk")
    for part in bulk.iterdir():
        assert (clone_path / "bulk" / part.name).read_bytes() == part.read_bytes()


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


@pytest.fixture(scope="module")
def reported(baseline, tmp_path_factory):
    """A copy of the baseline rerun with another learning rate, its report against HEAD written and
    published through a loopback image host, which stays up for the tests of the report."""
    root = tmp_path_factory.mktemp("reported")
    repo = Repo(shutil.copytree(baseline.path, root / "repo", symlinks=True))
    repo.set_params(seed_cnn={"learning_rate": 0.001})
    repo.dvc("repro")
    with image_host(root / "assets") as (upload, url):
        repo.run(sys.executable, "-m", "stages.report", "--base", "HEAD", "--publish-with", str(upload))
        yield SimpleNamespace(repo=repo, url=url, pages=report_pages(repo, root))


def test_report_compares_with_base_figure_by_figure(reported):
    """Everything a reader of the report gets that needs no browser, on every machine."""
    check_report(reported.repo, reported.url, reported.pages)


def test_report_pages_draw_in_a_browser(reported, tmp_path):
    """Skipped where no Chromium is installed (in CI, a failure: .ci/run installs it)."""
    chromium()
    pages = reported.pages
    # As a code host draws the file in a clone: from reports/, every image loads by its relative path.
    assert_every_image_draws(draw(pages.report, tmp_path / "chromium"), pages.images)
    # As the pull-request comment shows it: away from the repository, every image from its uploaded URL.
    assert_every_image_draws(draw(pages.comment, tmp_path / "c2"), pages.images)
    # vega-embed draws each chart into an element of class "marks"; images are <img>
    assert draw(pages.plots, tmp_path / "chromium").count('class="marks"') == pages.charts


def report_pages(repo, root):
    """The report as a code host renders it (in the clone), the published copy (anywhere else), and the
    plots page; how many images the report has, and how many charts the page (dvc.yaml's data plots)."""
    report = Artifacts(repo.path).report.read_text()
    elsewhere = root / "comment"
    elsewhere.mkdir()
    return SimpleNamespace(
        report=render_as_a_code_host(report, repo.path / "reports/report.html"),
        comment=render_as_a_code_host(Artifacts(repo.path).published_report.read_text(), elsewhere / "comment.html"),
        plots=Artifacts(repo.path).plots_page_dir / "index.html",
        images=len(re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)),
        charts=len(data_plots(repo)),
    )


@contextlib.contextmanager
def image_host(folder):
    """A loopback web server for `folder`, and an upload command as CML's: copies a file there, prints its URL."""
    folder.mkdir()
    with serving_folder(folder) as url:
        upload = folder.with_name("upload.sh")
        upload.write_text(f'#!/bin/sh\ncp "$1" "{folder}/" && echo "{url}/$(basename "$1")"\n')
        upload.chmod(0o755)
        yield upload, url


def check_report(repo, url, pages):
    """reports/report.md, its published copy and the plots page, as text: every figure of every table is
    the results file's, at this run and at the base (HEAD), and every chart holds both revisions' files."""
    report = Artifacts(repo.path).report.read_text()
    assert (
        report.splitlines()[2]
        == f"Compared with the base `HEAD` ({repo.git('rev-parse', '--short', 'HEAD').stdout.strip()})."
    )
    check_every_table(report, repo, "HEAD")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) == pages.images >= 9 and all((repo.path / "reports" / path).is_file() for path in images)
    tables = ("| metric |", "| class |", "| layer |", "| corruption |", "| format |")
    headers = [line for line in report.splitlines() if line.startswith(tables)]
    assert sorted(header.split("|")[1].strip() for header in headers) == sorted(t.strip("| ") for t in tables)
    for header in headers:  # every table of metrics: this run, the base and the change, for each metric
        cells = [cell.strip() for cell in header.strip("|").split("|")][1:]
        assert cells[1::3] == ["base"] * (len(cells) // 3) and cells[2::3] == ["change"] * (len(cells) // 3)
    # As a code host renders it: the params table has a base column and no change column; metrics 1
    # change column, classes 2 (recall, F1), layers 2, corruptions 1, export formats 4.
    rendered = pages.report.read_text()
    changes = re.findall(r"<th[^>]*>change</th>", rendered)
    assert len(re.findall(r"<th[^>]*>base</th>", rendered)) == len(changes) + 1
    assert len(changes) == 1 + 2 + 2 + 1 + 4
    # The pull-request comment: the same text, every image from its uploaded URL.
    published = Artifacts(repo.path).published_report.read_text()
    assert f"]({url}/" in published and not re.search(rf"\]\((?!{re.escape(url)})", published)
    assert re.sub(rf"\]\({re.escape(url)}/[^)]*\)", "]()", published) == re.sub(r"\]\([^)]*\)", "]()", report)

    assert "cdn.jsdelivr" not in pages.plots.read_text()  # Vega is inlined: the page draws offline
    # one chart per data plot of dvc.yaml (loss, accuracy, learning rate, confusion, reliability, accuracy
    # per class, corruptions), each holding the rows of this run's files and of the base's
    charts = page_specs(pages.plots.read_text(), repo)
    assert len(charts) == pages.charts == 7
    assert_charts_draw_each_revisions_files(charts, repo, ["HEAD", "workspace"])


def flat(data, prefix=""):
    """{'a': {'b': 1}} -> {'a.b': 1}, as `dvc metrics diff` names a results file's figures."""
    out = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def markdown_table(report, first):
    """{first cell: the other cells} of each row of the report's table whose header begins with `first`."""
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first} |"))
    assert set(lines[start + 1]) <= set("|-: "), lines[start + 1]  # the rule under the header
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        label, *cells = [cell.strip() for cell in line.strip()[1:-1].split("|")]
        rows[label] = cells
    return rows


def shows(cell, value):
    """A report's cell shows a results file's `value`: an integer or text as it is, a fraction to 4 decimals."""
    if isinstance(value, float):
        return bool(re.fullmatch(r"-?\d+\.\d{4}", cell)) and abs(float(cell) - value) <= 0.5e-4 + 1e-12
    return cell == str(value)


def shows_change(cell, base, value):
    return bool(re.fullmatch(r"[+-]\d+\.\d{4}", cell)) and abs(float(cell) - (value - base)) <= 0.5e-4 + 1e-9


# The results files whose figures the report's tables show (artifacts of cifar/core/artifacts.py)
RESULTS = {"metrics": "metrics", "robustness": "robustness_record", "export": "export_record"}
RESULTS["stimuli"] = "stimuli_record"
EXPORT_FIGURES = ("accuracy", "agreement_with_keras", "size_mb", "latency_ms")  # its table's columns, in order


def table_figures(results):
    """{table's first header cell: (results file, {row label: the figures of its columns, in order})}, from
    this run's results files ({name: the file's JSON}): what the report's tables must show, row by row."""
    metrics, robustness, export, stimuli = (results[name] for name in RESULTS)
    headline = ["accuracy", "loss", "ece", "nll", "macro.precision", "macro.recall", "macro.f1-score"]
    corruptions = {c.replace("_", " "): [f"corruptions.{c}.mean"] for c in robustness["corruptions"]}
    layers = stimuli["layers"]
    return {
        "metric": ("metrics", {name: [name] for name in headline}),
        "class": ("metrics", {c: [f"per_class.{c}.recall", f"per_class.{c}.f1-score"] for c in metrics["per_class"]}),
        "corruption": (
            "robustness",
            {
                "no corruption": ["clean_accuracy"],
                **corruptions,
                "**mean of all, every severity**": ["mean_corruption_accuracy"],
            },
        ),
        "format": (
            "export",
            {
                f: [f"{f}.{figure}" for figure in EXPORT_FIGURES]
                for f, value in export.items()
                if isinstance(value, dict)
            },
        ),
        "layer": (
            "stimuli",
            {
                f"{name} ({layer['filters']} filters)": [f"layers.{name}.dead", f"layers.{name}.mean_activation"]
                for name, layer in layers.items()
            },
        ),
    }


def check_every_table(report, repo, base):
    """Every cell of every table of `report` that comes from a results file is that file's figure at this
    run (the workspace) and at revision `base` (read by git), and the change is their difference."""
    results = {
        rev: {
            name: json.loads(file_at(repo, rev, getattr(Artifacts(), path).as_posix()))
            for name, path in RESULTS.items()
        }
        for rev in ("workspace", base)
    }
    now = {name: flat(data) for name, data in results["workspace"].items()}
    then = {name: flat(data) for name, data in results[base].items()}
    tables = table_figures(results["workspace"])
    assert [len(tables[first][1]) for first in ("class", "corruption", "format", "layer")] == [10, 8, 4, 4]
    for first, (name, rows) in tables.items():
        shown = markdown_table(report, first)
        assert list(shown) == list(rows), (first, list(shown))
        for label, keys in rows.items():
            cells = shown[label]
            assert len(cells) == 3 * len(keys), (first, label, cells)
            for key, value, base_value, change in zip(keys, cells[::3], cells[1::3], cells[2::3]):
                current, before = now[name][key], then[name][key]
                assert shows(value, current) and shows(base_value, before), (first, label, key, cells)
                assert shows_change(change, before, current), (first, label, key, cells)
    assert f"Latency measured on: {results['workspace']['export']['cpu']}." in report.splitlines()
    # the params that differ between the two revisions' params.yaml: the base's value, then this run's
    params = {rev: flat(yaml.safe_load(file_at(repo, rev, "params.yaml"))) for rev in (base, "workspace")}
    differing = {key for key, value in params["workspace"].items() if value != params[base].get(key)}
    shown = markdown_table(report, "param")
    assert set(shown) == differing == {"seed_cnn.learning_rate"}
    for key, (before, current) in shown.items():
        assert shows(before, params[base][key]) and shows(current, params["workspace"][key]), (key, shown[key])


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
