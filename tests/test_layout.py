"""The layout keeps its promises: dvc.yaml lists exactly the code each stage runs, entry points are
proper commands, stages never import stages, and no module imports itself through others."""

import subprocess
import sys

import pytest
import yaml

from cifar.core.codegraph import PROJECT_ROOT, files_run_by, imported_names, module_file
from tests.helpers import stage_env

STAGES = ("fetch", "preprocess", "train", "evaluate", "robustness", "export", "visualize")
COMMANDS = (*STAGES, "predict", "report")


def relative(paths):
    return {path.relative_to(PROJECT_ROOT).as_posix() for path in paths}


def project_modules():
    """Every module of ours: stages/*.py and cifar/**/*.py, by dotted name."""
    files = [*PROJECT_ROOT.glob("stages/*.py"), *PROJECT_ROOT.glob("cifar/**/*.py")]
    return {
        ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts).removesuffix(".__init__"): path for path in files
    }


def import_graph():
    """{module: the project modules it imports (anywhere in it)}."""
    modules = project_modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = {imported for imported in imported_names(path, package) if imported in modules}
    return graph


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_depends_on_exactly_the_code_it_runs(stage):
    pipeline = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]
    assert pipeline["cmd"] == f"python -m stages.{stage}"
    listed = {dep for dep in pipeline["deps"] if dep.endswith(".py")}
    runs = relative(files_run_by(f"stages.{stage}"))
    assert listed == runs, (
        f"dvc.yaml's {stage} lists {sorted(listed - runs)} that it does not run, "
        f"and misses {sorted(runs - listed)}; `python -m cifar.core.codegraph stages.{stage}` prints the list"
    )


def test_the_code_walk_finds_imports_anywhere_in_a_module(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg/__init__.py").write_text("")
    (tmp_path / "pkg/a.py").write_text("import os\n\ndef f():\n    from pkg import b  # deferred\n")
    (tmp_path / "pkg/b.py").write_text("from .c import thing\n")
    (tmp_path / "pkg/c.py").write_text("thing = 1\n")
    (tmp_path / "pkg/unused.py").write_text("")
    assert relative_to(files_run_by("pkg.a", tmp_path), tmp_path) == {
        "pkg/__init__.py",
        "pkg/a.py",
        "pkg/b.py",
        "pkg/c.py",
    }
    assert module_file("os", tmp_path) is None


def relative_to(paths, root):
    return {path.relative_to(root).as_posix() for path in paths}


def test_stages_never_import_stages():
    for name, imported in import_graph().items():
        if name.startswith("stages."):
            assert not {module for module in imported if module.startswith("stages.")}, f"{name} imports a stage"


def test_no_import_cycles():
    graph = import_graph()
    state = {}  # module -> "open" while on the current path, "done" after

    def visit(module, path):
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                pytest.fail("import cycle: " + " -> ".join([*path, module, imported]))
            if imported not in state:
                visit(imported, [*path, module])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


@pytest.mark.parametrize("command", COMMANDS)
def test_help_prints_usage_and_runs_nothing(tmp_path, command):
    """In an empty folder: with no params.yaml and no data, anything the stage ran would fail."""
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{command}", "--help"],
        cwd=tmp_path,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m stages.{command}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_an_unknown_flag_is_one_line_and_exit_2(tmp_path, command):
    result = subprocess.run(
        [sys.executable, "-m", f"stages.{command}", "--no-such-flag", *(["x.png"] if command == "predict" else [])],
        cwd=tmp_path,
        env=stage_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: python -m stages.{command}: unrecognized arguments: --no-such-flag (see --help)"
    )
    assert list(tmp_path.iterdir()) == []
