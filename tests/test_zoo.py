"""Adding a model is what docs/layout.md's "Extending" says: one module in cifar/zoo and its params.yaml
section (with its `tta` level), then dvc.yaml's code deps rewritten by `python -m cifar.core.codegraph
--update dvc.yaml`. Done here for a toy third model, in a throwaway copy of the project, and run by DVC."""

import json
import sys

import keras
import pytest
import yaml

from cifar.core.artifacts import Artifacts
from tests.datagen import write_cifar_archive
from tests.dvc_repo import make_repo
from tests.test_pipeline import TINY, ran_stages

TOY_MODULE = '''"""`train.model: toy`: a one-conv network, to show what a model of the zoo needs."""

import keras

from cifar.core.params import choice
from cifar.models.inputs import normalized_input
from cifar.models.recipe import COMMON
from cifar.zoo.spec import ModelSpec

RECIPE = {**COMMON, "pooling": choice("average", "max")}


def build(num_classes, recipe, train_images, seed, replicas):
    inputs, x = normalized_input()
    x = keras.layers.Conv2D(4, 3, activation="relu", name="toy_conv")(x)
    pool = keras.layers.GlobalAveragePooling2D if recipe["pooling"] == "average" else keras.layers.GlobalMaxPooling2D
    x = keras.layers.Dense(num_classes, name="toy_dense")(pool()(x))
    outputs = keras.layers.Activation("softmax", dtype="float32", name="softmax")(x)
    return keras.Model(inputs, outputs, name="toy")


SPEC = ModelSpec(
    name="toy",
    recipe=RECIPE,
    build=build,
    optimizer=lambda recipe, rate: keras.optimizers.SGD(rate),
    learning_rate=lambda recipe, steps_per_epoch: (recipe["learning_rate"], None),
    label_smoothing=lambda recipe: 0.0,
)
'''


@pytest.mark.slow
def test_a_third_model_is_one_module_and_its_params_section(tmp_path):
    archive = tmp_path / "tiny-cifar.tar.gz"
    write_cifar_archive(archive)
    repo = make_repo(tmp_path / "repo", archive, **TINY)
    root = repo.path
    (root / "cifar/zoo/toy.py").write_text(TOY_MODULE)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["train"]["model"] = "toy"
    params["toy"] = {"epochs": 1, "batch_size": 16, "learning_rate": 0.05, "warmup_epochs": 0, "pooling": "max"}
    params["toy"]["calibration_images"] = 0
    params["tta"]["toy"] = 1
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repo.run(sys.executable, "-m", "cifar.core.codegraph", "--update", "dvc.yaml")
    train_deps = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]["train"]["deps"]
    assert "cifar/zoo/toy.py" in train_deps
    repo.commit("a toy model")

    assert ran_stages(repo.dvc("repro", "evaluate").stdout) == ["fetch", "preprocess", "train", "evaluate"]
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
