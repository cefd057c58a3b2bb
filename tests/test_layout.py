"""The layout keeps its promises: dvc.yaml lists exactly the code each stage runs, entry points are
proper commands, stages never import stages, and no module imports itself through others."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.workspace import stage_env
from cifar.core.artifacts import OTHER, OUTS, Artifacts
from cifar.core.codegraph import PROJECT_ROOT, files_run_by, imported_names, module_file

STAGES = tuple(yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"])  # a new stage is checked too
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


def test_a_package_that_lists_its_modules_runs_all_of_them(tmp_path):
    """cifar/models finds its models by listing itself: every module in it is code the importer runs."""
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo/__init__.py").write_text(
        "import pkgutil\nNAMES = [m.name for m in pkgutil.iter_modules(__path__)]\n"
    )
    (tmp_path / "zoo/one.py").write_text("")
    (tmp_path / "zoo/two.py").write_text("")
    (tmp_path / "user.py").write_text("import zoo\n")
    assert relative_to(files_run_by("user", tmp_path), tmp_path) == {
        "user.py",
        "zoo/__init__.py",
        "zoo/one.py",
        "zoo/two.py",
    }


def relative_to(paths, root):
    return {path.relative_to(root).as_posix() for path in paths}


def test_networks_training_and_models_import_in_one_direction():
    """What a trained model is made of and how it is read (cifar/network) needs no training code and no
    model definition; training (cifar/training) is given its model and imports none; the models
    (cifar/models) use both, and only the train stage uses them."""
    graph = import_graph()
    for name, imported in graph.items():
        if name.startswith("cifar.network"):
            assert not {m for m in imported if m.startswith(("cifar.training", "cifar.models"))}, name
        if name.startswith("cifar.training"):
            assert not {m for m in imported if m.startswith("cifar.models")}, name
    users = {name for name, imported in graph.items() if any(m.startswith("cifar.models") for m in imported)}
    assert {name for name in users if not name.startswith("cifar.models")} == {"stages.train"}


MODEL_PARTS = ("check", "build", "optimizer", "loss", "batching", "callbacks")


def test_a_model_is_one_module_owning_its_recipe_its_network_and_its_training():
    """Each model module has every part the loop asks for and a Recipe extending TrainingRecipe; every other
    module of cifar/models is what several models share."""
    import dataclasses

    from cifar.models import MODELS
    from cifar.training.recipe import TrainingRecipe

    assert list(MODELS) == ["seed_cnn", "airbench94", "airbench94_muon"]
    for name, model in MODELS.items():
        assert all(callable(getattr(model, part, None)) for part in MODEL_PARTS), name
        assert issubclass(model.Recipe, TrainingRecipe) and model.Recipe.__dataclass_params__.frozen, name
        assert all("rule" in item.metadata for item in dataclasses.fields(model.Recipe)), name
    graph = import_graph()
    for path in (PROJECT_ROOT / "cifar/models").glob("*.py"):
        name = f"cifar.models.{path.stem}"
        if path.stem != "__init__" and path.stem not in MODELS:
            users = {user for user, imported in graph.items() if name in imported and user.startswith("cifar.models.")}
            assert len(users) >= 2, f"{name} is shared by {users}: a piece one model uses lives in that model"


def names_in(path, identifier):
    """Whether a module's code names `identifier`: an attribute, a variable, a keyword or a field."""
    tree = ast.parse(Path(path).read_text())
    return any(
        isinstance(node, ast.Attribute)
        and node.attr == identifier
        or isinstance(node, ast.Name)
        and node.id == identifier
        or isinstance(node, ast.keyword)
        and node.arg == identifier
        for node in ast.walk(tree)
    )


def documented_walk(title):
    """The files of code docs/layout.md's numbered walk under `title` names, in its order."""
    text = (PROJECT_ROOT / "docs/layout.md").read_text()
    section = text[text.index(title) :].split("\n### ")[0].split("\n## ")[0]
    steps = re.findall(r"^\d+\. `([\w/]+\.py)`", section, re.M)
    return steps


def test_a_models_param_is_followed_in_three_files_of_code_as_docs_layout_md_walks_it():
    """`airbench94_muon.widths`: the train stage reads the section named like the model into the model's
    Recipe; every file of the train stage's code that names `widths` is on the walk, the last one using it,
    and each file runs the next (the stage's cifar.models finds the model's module by listing its package)."""
    walk = documented_walk("### Following a param: `airbench94_muon.widths`")
    assert walk[0] == "stages/train.py" and len(walk) <= 3, walk
    train_code = relative(files_run_by("stages.train"))
    naming = {path for path in train_code if names_in(PROJECT_ROOT / path, "widths")}
    assert naming <= set(walk[1:]) and walk[-1] in naming, naming  # the last: the layer that uses it
    for before, after in zip(walk, walk[1:]):
        assert after in relative(files_run_by(".".join(Path(before).with_suffix("").parts))), (before, after)
    # and the loop between the stage and the model hands the recipe on without naming the key
    assert "cifar/training/loop.py" in train_code and "cifar/training/loop.py" not in naming


def test_no_small_module_has_a_single_user():
    """A module under 20 lines that one other module imports belongs in that module (package
    __init__ files aside)."""
    graph = import_graph()
    for name, path in project_modules().items():
        lines = len(path.read_text().splitlines())
        users = {user for user, imported in graph.items() if name in imported and user != name}
        if path.name != "__init__.py" and lines < 20:
            assert len(users) != 1, f"{name} ({lines} lines) has one user, {users}: fold it into its user"


@pytest.mark.parametrize("stage", ["evaluate", "robustness", "export", "visualize"])
def test_the_stages_that_only_predict_depend_on_no_training_code(stage):
    deps = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    assert [dep for dep in deps if dep.startswith(("cifar/training/", "cifar/models/"))] == []
    assert "cifar/network/trained.py" in deps  # they do load the model


def test_the_table_of_paths_is_dvc_yamls_outs_and_what_lies_outside_them():
    outs = set()
    for stage in yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"].values():
        outs |= {next(iter(out)) if isinstance(out, dict) else out for out in stage.get("outs", [])}
    assert set(OUTS.values()) == outs and len(set(OUTS.values())) == len(OUTS)
    for name, path in OTHER.items():  # inside an out, or written by no stage of dvc.yaml
        inside = [out for out in outs if path == out or path.startswith(out + "/")]
        assert not inside or path not in outs, name
    assert (
        Artifacts("w").model == Path("w/models/model.keras")
        and Artifacts().prepared_array("y_test").name == "y_test.npy"
    )
    with pytest.raises(AttributeError, match="no artifact 'modle'"):
        Artifacts().modle  # noqa: B018


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


# What benchmarks share: the scratch workspaces, the machine's settings, the interleaved timing, the shared
# values. Anything else of another benchmark is its own business; run_all calls each one's entry point.
SHARED_BENCHMARK_MODULES = {
    "benchmarks.workspace",
    "benchmarks.settings",
    "benchmarks.interleave",
    "benchmarks.recipes",
    "benchmarks.airbench_peer",
}
BENCHMARK_ENTRY_POINTS = {"run", "run_in", "run_if_available"}


def test_no_benchmark_uses_another_benchmarks_internals():
    import ast

    for path in (PROJECT_ROOT / "benchmarks").rglob("*.py"):
        tree = ast.parse(path.read_text())
        own = ".".join(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
        imported_benchmarks = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("benchmarks"):
                if node.module == "benchmarks":  # `from benchmarks import bench_x`: whole modules
                    imported_benchmarks |= {alias.asname or alias.name for alias in node.names}
                    assert path.name == "run_all.py", f"{own} imports whole benchmarks"
                else:
                    assert node.module in SHARED_BENCHMARK_MODULES | {own}, f"{own} imports {node.module}'s internals"
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and getattr(node.value, "id", None) in imported_benchmarks:
                assert node.attr in BENCHMARK_ENTRY_POINTS, f"{own} uses {node.value.id}.{node.attr}"


def test_the_benchmarks_that_back_a_figure_are_at_the_top_and_studies_apart():
    """Every benchmark at the top of benchmarks/ is named by README.md or docs/speed.md (a figure it backs)."""
    quoted = (PROJECT_ROOT / "README.md").read_text() + (PROJECT_ROOT / "docs/speed.md").read_text()
    for path in (PROJECT_ROOT / "benchmarks").glob("bench_*.py"):
        assert f"benchmarks.{path.stem}" in quoted or f"benchmarks/{path.name}" in quoted, path.name


def test_tests_and_benchmarks_share_one_scratch_helper_and_conftest_holds_fixtures_only():
    """benchmarks/workspace.py alone defines the scratch copies of the project and the params editing that
    the tests and benchmarks use; nothing imports tests/conftest.py as a module."""
    import ast

    shared = {"set_params", "stage_env", "command_env", "scratch_workspace", "scratch_repository", "Repo"}
    for path in [*(PROJECT_ROOT / "tests").glob("*.py"), *(PROJECT_ROOT / "benchmarks").rglob("*.py")]:
        tree = ast.parse(path.read_text())
        defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        if path != PROJECT_ROOT / "benchmarks/workspace.py":
            assert not defined & shared, f"{path.name} defines {defined & shared}: use benchmarks/workspace.py's"
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "tests.conftest" not in imported, f"{path.name} imports conftest: fixtures only there"
    conftest = ast.parse((PROJECT_ROOT / "tests/conftest.py").read_text())
    for node in conftest.body:
        if isinstance(node, ast.FunctionDef):
            assert any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list), node.name


def test_train_s_help_says_what_each_model_does_with_today_s_defaults():
    """Every claim `python -m stages.train --help` makes of a recipe, built here from params.yaml: a default
    changed without its help changed fails."""
    from stages import train

    text = " ".join(train.__doc__.split())
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    tutorial, muon, sgd = params["seed_cnn"], params["airbench94_muon"], params["airbench94"]
    claims = [f"`{params['train']['model']}` (the default)"]
    for recipe in (tutorial, muon, sgd):
        claims.append(f"{recipe['epochs']} epochs of batch {recipe['batch_size']}")
    assert tutorial["schedule"] == "exponential"
    claims.append(f"Adamax at {tutorial['learning_rate']} decaying exponentially by {tutorial['lr_decay']} each epoch")
    for recipe in (muon, sgd):
        claims.append(f"at widths {'/'.join(map(str, recipe['widths']))}")
        claims.append(f"label smoothing {recipe['label_smoothing']}")
        claims.append(f"whitening bias frozen after {recipe['whiten_bias_epochs']} epochs")
        claims.append(f"{recipe['calibration_images']} images held out for the temperature")
    assert sgd["schedule"] == "triangle" and sgd["lookahead_every"] > 0
    claims.append(f"triangular rate peaking at {sgd['learning_rate']}")
    claims.append(f"lookahead every {sgd['lookahead_every']} steps")
    assert [claim for claim in claims if claim not in text] == []


def test_robustness_s_help_names_today_s_default_source_and_its_severities():
    from cifar.robustness.corruptions import CORRUPTIONS
    from stages import robustness

    text = " ".join(robustness.__doc__.split())
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())["robustness"]
    assert "data/sources/generated.yaml (the default" in text and params["source"] == "data/sources/generated.yaml"
    count = {6: "six"}[len(CORRUPTIONS)]
    severities = {5: "five"}[len(params[CORRUPTIONS[0]])]
    assert f"in {count} ways, each at {severities} severities" in text


def test_every_output_persists_so_a_failed_stage_keeps_it():
    """DVC removes a stage's outputs before its command unless they persist; the stages replace theirs
    atomically on success instead (docs/guarantees.md; tests/test_failed_stages.py runs it through dvc)."""
    for name, stage in yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"].items():
        for out in stage["outs"]:
            assert isinstance(out, dict) and next(iter(out.values())).get("persist") is True, f"{name}: {out}"
