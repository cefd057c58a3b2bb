"""The locks install on every platform and Python version the README promises, checked through the
package registry with uv's own resolver, installing nothing.

For each (platform, Python) pair, uv resolves the lock for that target from wheels alone, and the
packages it picks must be exactly the lock's pins whose markers hold there: a pin without a wheel
for the platform (`tensorflow-cpu` on a Mac, say) or a dependency missing from the lock fails.
Needs the package registry: skipped without it, except under CI=true, where it fails instead.
"""

import os
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from benchmarks.workspace import PROJECT

# The platforms the README supports: uv's target name, and the PEP 508 environment it stands for.
PLATFORMS = {
    "linux-x86_64": ("x86_64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "x86_64"}),
    "linux-aarch64": ("aarch64-manylinux_2_28", {"sys_platform": "linux", "platform_machine": "aarch64"}),
    "macos-arm64": ("aarch64-apple-darwin", {"sys_platform": "darwin", "platform_machine": "arm64"}),
}
SYSTEMS = {"linux": "Linux", "darwin": "Darwin"}
# Each lock and the platforms it is for: the GPU lock is NVIDIA's CUDA wheels, Linux x86_64 only.
LOCKS = {"requirements.txt": tuple(PLATFORMS), "requirements-gpu.txt": ("linux-x86_64",)}
# Pure-Python packages published as source only: built on any platform, so no wheel is needed.
SOURCE_ONLY = ("antlr4-python3-runtime",)
UNREACHABLE = ("dns error", "Failed to fetch", "error sending request", "Connection refused", "timed out")


def supported_pythons():
    """Every Python 3 minor version that pyproject.toml's requires-python admits, e.g. ['3.11', '3.12', '3.13']."""
    admitted = SpecifierSet(tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["requires-python"])
    return [f"3.{minor}" for minor in range(6, 30) if f"3.{minor}.0" in admitted]


def environment(platform, python):
    markers = PLATFORMS[platform][1]
    return {
        **markers,
        "platform_system": SYSTEMS[markers["sys_platform"]],
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "platform_release": "",
        "platform_version": "",
    }


def lock_pins(lock_text, env):
    """{name: version} of the lock's pins whose markers hold in `env`."""
    pins = {}
    for line in lock_text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate(env):
            (spec,) = requirement.specifier
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def uv_resolution(lock, platform, python):
    """(return code, {name: version} uv picks for `lock` on `platform` with `python`, uv's message)."""
    uv = Path(sys.executable).parent / "uv"
    result = subprocess.run(
        [str(uv), "pip", "compile", str(lock), "--python-platform", PLATFORMS[platform][0]]
        + ["--python-version", python, "--only-binary", ":all:"]
        + [arg for name in SOURCE_ONLY for arg in ("--no-binary", name)]
        + ["--no-header", "--no-annotate"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "UV_NO_CONFIG": "1"},
    )
    picked = {}
    for line in result.stdout.splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            picked[canonicalize_name(match.group(1))] = match.group(2)
    return result.returncode, picked, result.stderr


def skip_if_unreachable(message):
    if any(sign in message for sign in UNREACHABLE):
        if os.environ.get("CI") == "true":
            pytest.fail(f"the package registry is unreachable under CI=true:\n{message}")
        pytest.skip("the package registry is unreachable")


def check(lock, platform, python):
    """None when `lock` resolves on (platform, python) to exactly its pins; else what went wrong."""
    code, picked, message = uv_resolution(lock, platform, python)
    if code != 0:
        skip_if_unreachable(message)
        return f"{lock.name} on {platform}, Python {python}: {message.strip()}"
    expected = lock_pins(lock.read_text(), environment(platform, python))
    if picked != expected:
        differ = sorted(set(picked.items()) ^ set(expected.items()))
        return f"{lock.name} on {platform}, Python {python}: uv's resolution and the lock differ: {differ}"
    return None


def test_the_supported_pythons_are_those_tensorflow_publishes_wheels_for():
    assert supported_pythons() == ["3.11", "3.12", "3.13"]


def test_each_lock_resolves_from_wheels_on_every_supported_platform_and_python():
    cases = [(lock, platform, python) for lock in LOCKS for platform in LOCKS[lock] for python in supported_pythons()]
    assert len(cases) == 12
    with ThreadPoolExecutor(len(cases)) as pool:  # waits on the registry, not the CPU
        problems = list(pool.map(lambda case: check(PROJECT / case[0], *case[1:]), cases))
    assert [p for p in problems if p] == []


def test_a_pin_without_its_platform_marker_fails_the_check(tmp_path):
    """tensorflow-cpu has no macOS or Linux aarch64 wheels: unmarked, as it once was, the Mac cannot install."""
    lock = tmp_path / "requirements.txt"
    text = (PROJECT / "requirements.txt").read_text()
    unmarked, count = re.subn(r"^tensorflow-cpu==(\S+) ;.*$", r"tensorflow-cpu==\1", text, flags=re.M)
    assert count == 1
    lock.write_text(unmarked)
    assert check(lock, "linux-x86_64", "3.11") is None
    problem = check(lock, "macos-arm64", "3.11")
    assert problem and "tensorflow-cpu" in problem


def test_the_gpu_lock_installs_tensorflow_with_cuda_in_place_of_the_cpu_build():
    env = environment("linux-x86_64", "3.12")
    gpu = lock_pins((PROJECT / "requirements-gpu.txt").read_text(), env)
    cpu = lock_pins((PROJECT / "requirements.txt").read_text(), env)
    assert "tensorflow-cpu" not in gpu and gpu["tensorflow"] == cpu["tensorflow-cpu"]
    assert "nvidia-cudnn-cu12" in gpu and "tensorflow" not in cpu
    mac = environment("macos-arm64", "3.12")
    assert "tensorflow-cpu" not in lock_pins((PROJECT / "requirements.txt").read_text(), mac)
    # every other pin is the same in both locks: a GPU machine runs what CI tested
    shared = set(cpu) - {"tensorflow-cpu"}
    assert {name: gpu[name] for name in shared} == {name: cpu[name] for name in shared}


@pytest.mark.parametrize("lock", list(LOCKS))
def test_each_lock_installs_the_remote_plugins_docs_outputs_md_promises(lock):
    """`make install` gives DVC's S3 and SSH plugins (the extras dvc[s3], dvc[ssh]) and the S3 test server."""
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    (dvc,) = [Requirement(line) for line in project["dependencies"] if Requirement(line).name == "dvc"]
    extras = project["optional-dependencies"]
    assert extras["s3"] == [f"dvc[s3]{dvc.specifier}"] and extras["ssh"] == [f"dvc[ssh]{dvc.specifier}"]
    for platform in LOCKS[lock]:
        pins = lock_pins((PROJECT / lock).read_text(), environment(platform, supported_pythons()[0]))
        assert {"dvc-s3", "dvc-ssh", "s3fs", "asyncssh", "moto"} <= set(pins), (lock, platform)
