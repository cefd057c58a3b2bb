"""Stage train: fit the model chosen by `train.model`, checkpointed after every epoch.

Reads the prepared arrays, params.yaml's `train` section (model, precision, strategy, seed) and the
chosen model's recipe, the section named like it (`seed_cnn`: the tutorial's Adamax with its
exponential decay; `fast`: Nesterov SGD, by default airbench's triangular rate (up over the first
epochs, then down), label smoothing, airbench's lookahead, optionally an average of the weights).
With `calibration_images` > 0, that many training images are held out and a temperature fitted on
them at the end, which the saved model applies to its class scores (cifar/calibration).
Killed at any moment, the next run resumes from the last completed epoch and ends with the same
weights.
Writes models/model.keras, models/classes.json, models/input.json (how the training pictures
were fitted to 32x32, from preprocess, for predict) and reports/train/ (DVCLive: per-epoch history,
last-epoch metrics, and params.yaml with the precision, strategy and CPU this run resolved).
"""

import sys

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.params import load_params


def main(argv=None):
    cli.parser("stages.train", __doc__).parse_args(argv)
    # After the arguments: TensorFlow takes seconds to import, and --help needs none of it.
    from cifar.models import TRAIN_RULES, model_definition
    from cifar.training.loop import train

    settings = load_params({"train": TRAIN_RULES})["train"]
    name = settings["model"]
    definition = model_definition(name)  # cifar/models/<name>.py
    recipe = load_params({name: definition.RECIPE})[name]
    train(definition, settings, recipe, Artifacts())


if __name__ == "__main__":
    sys.exit(cli.run(main))
