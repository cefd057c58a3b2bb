"""Extending the project is what docs/layout.md's "Extending" says, done here in a throwaway copy of the
project and run by DVC: a model is one module in cifar/models and its params.yaml section (with its
`tta` level), then dvc.yaml's code deps rewritten by `python -m cifar.core.codegraph --update dvc.yaml`;
a param of that model is its Recipe field (its rule beside it) and its reading in that module, and its
value in params.yaml;
a stage is its module in stages/, its paths in cifar/core/artifacts.py and its entry in dvc.yaml.
Each counts the files it touched (`git status`), the counts docs/layout.md gives."""

import json
import re
import sys

import keras
import pytest
import yaml

from benchmarks.workspace import PROJECT, scratch_repository
from cifar.core.artifacts import Artifacts
from tests.datagen import write_cifar_archive
from tests.pipeline_outputs import TINY_PIPELINE, ran_stages

TOY_MODULE = '''"""`train.model: toy`: a one-conv network, to show what a model needs."""

from dataclasses import dataclass

import keras

from cifar.core.params import choice, param, positive_number
from cifar.network.layers import normalized_input
from cifar.training.batches import Batching
from cifar.training.recipe import TrainingRecipe


@dataclass(frozen=True)
class Recipe(TrainingRecipe):
    learning_rate: float = param(positive_number())
    pooling: str = param(choice("average", "max"))


def check(recipe, replicas):
    pass


def build(recipe, num_classes, train_images, seed, replicas):
    inputs, x = normalized_input()
    x = keras.layers.Conv2D(4, 3, activation="relu", name="toy_conv")(x)
    pool = keras.layers.GlobalAveragePooling2D if recipe.pooling == "average" else keras.layers.GlobalMaxPooling2D
    x = keras.layers.Dense(num_classes, name="toy_dense")(pool()(x))
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name="toy")


def optimizer(recipe, steps_per_epoch):
    return keras.optimizers.SGD(recipe.learning_rate)


def loss(recipe):
    return keras.losses.CategoricalCrossentropy()


def batching(recipe):
    return Batching()


def callbacks(recipe, steps_per_epoch):
    return []
'''

# A stage: the test accuracy alone, from evaluate's metrics.
SUMMARY_STAGE = '''"""Stage summary: the test accuracy alone, in reports/summary.json."""

import json
import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import write_json


def main(argv=None):
    cli.parser("stages.summary", __doc__).parse_args(argv)
    artifacts = Artifacts()
    write_json(artifacts.summary, {"accuracy": json.loads(artifacts.metrics.read_text())["accuracy"]})


if __name__ == "__main__":
    sys.exit(cli.run(main))
'''


def touched(repo):
    """The files changed or added since the last commit."""
    lines = repo.git("status", "--porcelain", "--untracked-files=all").stdout.splitlines()
    return sorted(line[3:] for line in lines)


def documented_count(kind):
    """How many files docs/layout.md's "Extending" table says adding `kind` touches now."""
    table = (PROJECT / "docs/layout.md").read_text()
    (count,) = re.findall(rf"^\| {kind} \| (\d+): ", table, re.M)
    return int(count)


@pytest.mark.slow
def test_a_model_a_param_and_a_stage_each_touch_the_files_layout_md_says(tmp_path):
    archive = tmp_path / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = scratch_repository(tmp_path / "repo", archive, **TINY_PIPELINE)
    root = repo.path
    (root / "cifar/models/toy.py").write_text(TOY_MODULE)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["model"] = "toy"
    params["toy"] = {"epochs": 1, "batch_size": 16, "learning_rate": 0.05, "pooling": "max"}
    params["toy"]["calibration_images"] = 0
    params["toy"]["test_every_epoch"] = True
    params["tta"]["toy"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo.run(sys.executable, "-m", "cifar.core.codegraph", "--update", "dvc.yaml")
    train_deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    assert "cifar/models/toy.py" in train_deps
    assert touched(repo) == ["cifar/models/toy.py", "dvc.yaml", "params.yaml"]
    assert len(touched(repo)) == documented_count("a model")
    repo.commit("a toy model")

    # a stage: its module, its path in the table of paths, its entry in dvc.yaml (and the code deps)
    (root / "stages/summary.py").write_text(SUMMARY_STAGE)
    artifacts_file = root / "cifar/core/artifacts.py"
    table = artifacts_file.read_text()
    artifacts_file.write_text(
        table.replace("    # visualize\n", '    "summary": "reports/summary.json",\n    # visualize\n')
    )
    pipeline = (root / "dvc.yaml").read_text()
    summary_entry = "  summary:\n    cmd: python -m stages.summary\n    deps:\n      - reports/metrics.json\n"
    summary_entry += "    outs:\n      - reports/summary.json\n"
    (root / "dvc.yaml").write_text(pipeline.replace("\nartifacts:\n", f"\n{summary_entry}\nartifacts:\n", 1))
    repo.run(sys.executable, "-m", "cifar.core.codegraph", "--update", "dvc.yaml")
    summary_deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["summary"]["deps"]
    assert {"stages/summary.py", "cifar/core/artifacts.py", "cifar/core/atomic.py"} <= set(summary_deps)
    assert touched(repo) == ["cifar/core/artifacts.py", "dvc.yaml", "stages/summary.py"]
    assert len(touched(repo)) == documented_count("a stage")
    assert repo.run(sys.executable, "-m", "stages.summary", "--help").stdout.startswith(
        "usage: python -m stages.summary"
    )
    repo.commit("a summary stage")

    assert ran_stages(repo.dvc("repro", "summary").stdout) == ["fetch", "preprocess", "train", "evaluate", "summary"]
    summary = json.loads((root / "reports/summary.json").read_text())
    assert summary == {"accuracy": json.loads(Artifacts(root).metrics.read_text())["accuracy"]}
    model = keras.models.load_model(Artifacts(root).model, compile=False)
    assert model.name == "toy" and any(isinstance(layer, keras.layers.GlobalMaxPooling2D) for layer in model.layers)
    classes = json.loads(Artifacts(root).model_classes.read_text())
    assert set(json.loads(Artifacts(root).metrics.read_text())["per_class"]) == set(classes)
    assert yaml.safe_load((root / "dvc.lock").read_text())["stages"]["evaluate"]["params"]["params.yaml"] == {
        "evaluate": params["evaluate"],
        "train.model": "toy",
        "tta.toy": 1,
    }

    # its recipe is its own: editing the recipe of a model not in use reruns nothing, editing its own retrains
    repo.set_params(seed_cnn={"epochs": 3})
    assert ran_stages(repo.dvc("repro", "evaluate").stdout) == []
    repo.set_params(toy={"pooling": "average"})
    assert repo.dvc("status", "train").stdout.count("modified:") == 1
    repo.commit("average pooling")

    # a param: its rule and its reading in the model's module, its value in params.yaml: 2 files
    toy_file = root / "cifar/models/toy.py"
    toy = toy_file.read_text().replace(
        '    pooling: str = param(choice("average", "max"))\n',
        '    pooling: str = param(choice("average", "max"))\n    filters: int = param(positive_int())\n',
    )
    toy = toy.replace("import choice, param,", "import choice, param, positive_int,")
    toy_file.write_text(toy.replace("keras.layers.Conv2D(4, 3,", "keras.layers.Conv2D(recipe.filters, 3,"))
    repo.set_params(toy={"filters": 6})
    assert touched(repo) == ["cifar/models/toy.py", "params.yaml"]
    assert len(touched(repo)) == documented_count("a param")
    assert ran_stages(repo.dvc("repro", "train").stdout) == ["train"]
    model = keras.models.load_model(Artifacts(root).model, compile=False)
    assert model.get_layer("toy_conv").filters == 6
    repo.set_params(toy={"filters": 0})
    failed = repo.dvc("repro", "train", check=False)
    assert failed.returncode != 0 and "toy.filters is 0" in failed.stdout + failed.stderr
