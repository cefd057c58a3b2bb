"""The models `train.model` can name: one module of this package each, named like the model, holding all
that differs between models:

- `RECIPE`: the rules of the model's section of params.yaml (cifar/training/loop.py's RECIPE_RULES and
  its own keys);
- `build(num_classes, recipe, train_images, seed, replicas)`: the network, uncompiled, starting from
  cifar.network.layers' `normalized_input` and ending in a float32 softmax;
- `optimizer(recipe, steps_per_epoch)`: its Keras optimizer, holding its learning-rate schedule;
- `callbacks(recipe, steps_per_epoch)`: the Keras callbacks its training adds.

The training loop reads everything else from the recipe by its documented keys. Found by listing the
package, so adding a model is a module here and its section in params.yaml (docs/layout.md). Only the
train stage uses this package; the other stages load the trained model without it (cifar.network).
"""

import importlib
import pkgutil

from cifar.core.errors import PipelineError
from cifar.core.params import choice, non_negative_int
from cifar.training.distribute import STRATEGIES
from cifar.training.precision import CHOICES as PRECISIONS

# The tutorial's model first: it is the default, and error messages list it first.
FIRST = "seed_cnn"


def _discover():
    found = {}
    for module in pkgutil.iter_modules(__path__):
        definition = importlib.import_module(f"{__name__}.{module.name}")
        if hasattr(definition, "RECIPE"):
            found[module.name] = definition
    return dict(sorted(found.items(), key=lambda item: (item[0] != FIRST, item[0])))


MODELS = _discover()  # name -> its module
MODEL_NAMES = tuple(MODELS)

# params.yaml's `train` section; the chosen model's own section has its RECIPE's rules
TRAIN_RULES = {
    "model": choice(*MODEL_NAMES),
    "precision": choice(*PRECISIONS),  # cifar/training/precision.py
    "strategy": choice(*STRATEGIES),  # cifar/training/distribute.py
    "seed": non_negative_int(),
}


def model_definition(name):
    """The module of cifar/models that defines model `name`."""
    try:
        return MODELS[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def build_model(name, num_classes, recipe, train_images=None, seed=0, replicas=1):
    """A fresh, uncompiled model `name` for `recipe` (the fast model whitens `train_images`)."""
    return model_definition(name).build(num_classes, recipe, train_images, seed, replicas)
