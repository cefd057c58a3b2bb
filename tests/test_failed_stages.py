"""Through the real `dvc` command, as users run it: a stage that refuses its input loses no earlier result.

dvc.yaml marks every output `persist: true`, so DVC leaves it in place when it reruns a stage, and each
stage replaces its outputs (atomically) only once it succeeds. For each stage, from a good run of the whole
pipeline: a bad input of a kind that stage refuses, then `dvc repro` (or `dvc exp run`): one error line
from the stage, a non-zero exit, and every output of the pipeline, and dvc.lock, byte for byte as before.
Then the input fixed: back to the value that made the outputs, nothing reruns (they are still the ones
dvc.lock records); to another good value, that stage reruns and no other.
"""

import hashlib
import socket

import numpy as np
import pytest
import yaml

from cifar.core.artifacts import OUTS, Artifacts
from tests.datagen import cifar_c_arrays, write_cifar_c
from tests.helpers import serving
from tests.pipeline_outputs import committed_baseline, private_copy, ran_stages

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """A repo whose pipeline ran once on tiny data, committed; and the archive it fetched."""
    return committed_baseline(tmp_path_factory.mktemp("failed_stages"))


@pytest.fixture
def repo(baseline, tmp_path):
    """A private copy of the baseline repo (its DVC cache included)."""
    return private_copy(baseline[0], tmp_path)


def outputs(repo):
    """Every file of every output dvc.yaml declares, and dvc.lock: {path in the repo: bytes}."""
    files = {"dvc.lock": (repo.path / "dvc.lock").read_bytes()}
    for out in OUTS.values():
        path = repo.path / out
        found = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path] * path.exists()
        files.update({p.relative_to(repo.path).as_posix(): p.read_bytes() for p in found})
    return files


def assert_refused(repo, line, *command, env=None):
    """`dvc <command>` (default: repro) fails, the stage printing one error line, which starts with `line`, no
    traceback, and every output as it was."""
    before = outputs(repo)
    result = repo.dvc(*(command or ("repro",)), check=False, env=env)
    assert result.returncode != 0, result.stdout
    printed = result.stdout + result.stderr
    errors = [text for text in printed.splitlines() if text.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(line), printed
    assert "Traceback" not in printed
    after = outputs(repo)
    assert sorted(after) == sorted(before), "an output appeared or went"
    assert [path for path in before if after[path] != before[path]] == [], "outputs changed"


def assert_reruns(repo, stages, *command):
    result = repo.dvc(*(command or ("repro",)))
    assert ran_stages(result.stdout) == stages, result.stdout


def descriptor(repo, url, checksum):
    """A download descriptor in the repo's data/sources (where DVC tracks its text); its params.yaml value."""
    path = repo.path / "data/sources/mine.yaml"
    path.write_text(yaml.safe_dump({"url": url, "checksum": checksum}))
    return "data/sources/mine.yaml"


def closed_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def assert_a_checksum_typo_is_refused_then_fixed(repo, served, section, keras_home):
    """`section`.source aimed at a descriptor of `served` (on loopback) whose md5 has a typo: one download (a
    complete file is not fetched again), one line naming both digests, every output kept, no copy cached;
    the checksum corrected, that stage alone reruns."""
    digest = hashlib.md5(served.read_bytes()).hexdigest()
    typo = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    with serving(served) as (handler, url):
        repo.set_params(**{section: {"source": descriptor(repo, url, f"md5:{typo}")}})
        line = (
            f"error: {url}: downloaded whole, but its md5 is {digest}, not the expected {typo}; not retried, as "
            "the server would send the same bytes (check the checksum in its descriptor)"
        )
        assert_refused(repo, line, env={"KERAS_HOME": str(keras_home)})
        assert handler.requests == 1
        assert not any((keras_home / "datasets").iterdir()), "the bad copy was kept"
        descriptor(repo, url, f"md5:{digest}")
        assert_reruns(repo, [section], "repro")


def test_fetch_with_a_wrong_checksum_keeps_every_output_then_reruns_alone(repo, baseline, tmp_path):
    """The same dataset once the checksum is right: nothing after fetch reruns."""
    assert_a_checksum_typo_is_refused_then_fixed(repo, baseline[1], "fetch", tmp_path / "keras_home")


@pytest.mark.parametrize("source", ["unreachable", "unreadable"])
def test_fetch_from_a_source_it_cannot_read_keeps_every_output(repo, tmp_path, source):
    if source == "unreachable":  # a server that is down: nothing listens on the port
        url = f"http://localhost:{closed_port()}/cifar.tar.gz"
        repo.set_params(fetch={"source": descriptor(repo, url, None), "retries": 1})
        line = f"error: download failed after 1 attempts: {url}: URL fetch failure on {url}"
    else:  # a file that is no archive
        junk = tmp_path / "dataset.tar.gz"
        junk.write_bytes(b"not an archive at all")
        repo.set_params(fetch={"source": str(junk)})
        line = f"error: {junk}: "
    assert_refused(repo, line, env={"KERAS_HOME": str(tmp_path / "keras_home")})
    repo.git("checkout", "params.yaml")
    assert_reruns(repo, [])


# (section, its key, a bad value, another good value: None = back to the baseline's)
MISTYPED = [
    ("preprocess", "max_train_images", -1, None),
    ("seed_cnn", "epochs", 0, None),
    ("evaluate", "mistakes", 100, 8),
    ("robustness", "max_images", 0, 20),
    ("export", "latency_runs", 0, 3),
    ("visualize", "iterations", 0, 2),
]
RERUNS = {"seed_cnn": "train"}  # the stage that reads a section, where it is not named alike


@pytest.mark.parametrize("section, key, bad, good", MISTYPED, ids=[case[0] for case in MISTYPED])
def test_a_mistyped_param_keeps_every_output(repo, section, key, bad, good):
    repo.set_params(**{section: {key: bad}})
    assert_refused(repo, f"error: params.yaml: {section}.{key} is {bad}; allowed: ")
    repo.git("checkout", "params.yaml")
    if good is None:
        assert_reruns(repo, [])
    else:
        repo.set_params(**{section: {key: good}})
        assert_reruns(repo, [RERUNS.get(section, section)])


def test_robustness_with_a_wrong_checksum_keeps_every_output_then_reruns_alone(repo, tmp_path):
    """The reported case: the published CIFAR-10-C through a descriptor whose checksum has a typo."""
    artifacts = Artifacts(repo.path)
    tar = write_cifar_c(
        tmp_path / "CIFAR-10-C.tar", cifar_c_arrays(np.load(artifacts.x_test), np.load(artifacts.y_test))
    )
    assert_a_checksum_typo_is_refused_then_fixed(repo, tar, "robustness", tmp_path / "keras_home")


def test_a_failed_exp_run_keeps_every_output(repo):
    """`dvc exp run -S` with a value the stage refuses, then with a good one: that stage alone reruns."""
    line = "error: params.yaml: visualize.iterations is 0; allowed: an integer from 1 to 10000"
    assert_refused(repo, line, "exp", "run", "-S", "visualize.iterations=0")
    repo.git("checkout", "params.yaml")
    assert_reruns(repo, ["visualize"], "exp", "run", "-S", "visualize.iterations=2")
