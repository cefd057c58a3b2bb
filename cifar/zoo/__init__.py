"""The models `train.model` can name: one module of this package each, whose `SPEC` (a
cifar.zoo.spec.ModelSpec) says everything that differs between models: builder, recipe rules,
optimizer, schedule, loss, training callbacks, batch augmentation. Found by listing the package,
so adding a model is a module here and its recipe's section in params.yaml (docs/layout.md).

The zoo joins the architectures (cifar.models) with the training pieces (cifar.training), which
never import each other; only the train stage uses it.
"""

import importlib
import pkgutil

from cifar.core.errors import PipelineError
from cifar.core.params import choice
from cifar.training.params import TRAIN

# The tutorial's model first: it is the default, and error messages list it first.
FIRST = "seed_cnn"


def _discover():
    specs = {}
    for module in pkgutil.iter_modules(__path__):
        spec = getattr(importlib.import_module(f"{__name__}.{module.name}"), "SPEC", None)
        if spec is not None:
            specs[spec.name] = spec
    return dict(sorted(specs.items(), key=lambda item: (item[0] != FIRST, item[0])))


MODELS = _discover()
MODEL_NAMES = tuple(MODELS)
MODEL_RULE = choice(*MODEL_NAMES)  # train.model
TRAIN_RULES = {"model": MODEL_RULE, **TRAIN}  # params.yaml's `train` section


def model_spec(name):
    try:
        return MODELS[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def build_model(name, num_classes, recipe, train_images=None, seed=0, replicas=1):
    """A fresh, uncompiled model `name` for `recipe` (the fast model whitens `train_images`)."""
    return model_spec(name).build(num_classes, recipe, train_images, seed, replicas)
