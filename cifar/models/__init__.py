"""The models `train.model` can name: one module of this package each, named like the model, owning all
of its training. The loop (cifar/training/loop.py) asks the module, and nothing else, for:

- `Recipe`: a frozen dataclass of its params.yaml section (the section named like the model), extending
  cifar/training/recipe.py's TrainingRecipe; each field's rule is beside it (`param(rule)`);
- `check(recipe, replicas)`: PipelineError for what the model cannot do (e.g. a limit on replicas);
- `build(recipe, num_classes, train_images, seed, replicas)`: the network, uncompiled, starting from
  cifar.network.layers' `normalized_input` and ending in a float32 softmax;
- `optimizer(recipe, steps_per_epoch)`: its Keras optimizer, holding its learning-rate schedule;
- `loss(recipe)`: its Keras loss;
- `batching(recipe)`: how its training batches are drawn (cifar/training/batches.py's Batching);
- `callbacks(recipe, steps_per_epoch)`: the Keras callbacks its training adds.

Found by listing the package (a module defining `Recipe` is a model; airbench_net.py is what two models
share), so adding a model is a module here and its section in params.yaml (docs/layout.md). Only the
train stage uses this package; the other stages load the trained model without it (cifar.network).
"""

import importlib
import pkgutil

from cifar.core.errors import PipelineError
from cifar.core.params import check_section, choice, non_negative_int, rules_of
from cifar.training.distribute import STRATEGIES
from cifar.training.precision import CHOICES as PRECISIONS

# The tutorial's model first: it is the default, and error messages list it first.
FIRST = "seed_cnn"


def _discover():
    found = {}
    for module in pkgutil.iter_modules(__path__):
        definition = importlib.import_module(f"{__name__}.{module.name}")
        if hasattr(definition, "Recipe"):
            found[module.name] = definition
    return dict(sorted(found.items(), key=lambda item: (item[0] != FIRST, item[0])))


MODELS = _discover()  # name -> its module

# params.yaml's `train` section; the chosen model's own section has its Recipe's rules
TRAIN_RULES = {
    "model": choice(*MODELS),
    "precision": choice(*PRECISIONS),  # cifar/training/precision.py
    "strategy": choice(*STRATEGIES),  # cifar/training/distribute.py
    "seed": non_negative_int(),
}

# Models of earlier versions, and what replaced them: a params.yaml naming one is refused, not half-read.
RENAMED = {"fast": "airbench94_muon (its defaults, Muon) or airbench94 (its SGD recipe)"}


def model(name):
    """The module of cifar/models that defines model `name`."""
    try:
        return MODELS[name]
    except KeyError:
        raise PipelineError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def recipe(name, params):
    """Model `name`'s Recipe from the params mapping `params` (its section `name`, every key checked)."""
    recipe_class = model(name).Recipe
    return recipe_class(**check_section(params, name, rules_of(recipe_class)))


def refuse_renamed(params):
    """PipelineError when `params` still names a model that was renamed, as train.model, a section or a tta key.
    A params file not shaped as sections is left to check_section, which says so."""
    if not isinstance(params, dict):
        return
    train, tta = (params.get(name) if isinstance(params.get(name), dict) else {} for name in ("train", "tta"))
    for old, new in RENAMED.items():
        places = {
            f"train.model {old}": train.get("model") == old,
            f"section {old}": old in params,
            f"tta.{old}": old in tta,
        }
        named = [place for place, present in places.items() if present]
        if named:
            raise PipelineError(
                f"params.yaml: {', '.join(named)}: the model {old!r} is now two models; allowed: {new} "
                f"(rename the section, train.model and tta.{old} to one of them)"
            )
