"""Stage train: fit the model chosen by `train.model`, checkpointed after every epoch.

Reads the prepared arrays, params.yaml's `train` section (model, precision, strategy, seed) and the
chosen model's recipe, the section named like it. With today's defaults:
- `seed_cnn` (the default): the tutorial's CNN, 10 epochs of batch 32, Adamax at 0.005 decaying
  exponentially by 0.9 each epoch;
- `airbench94_muon`: the fast recipe, 8 epochs of batch 1536 at widths 64/256/256 (hiverge/cifar10-speedrun's
  values): Muon for the conv filters and Nesterov SGD for the biases and the head, every rate falling
  linearly to 0, SiLU, colour jitter, label smoothing 0.09, the whitening bias frozen after 0.19 epochs,
  2000 images held out for the temperature;
- `airbench94`: 10 epochs of batch 256 at widths 32/128/128: Nesterov SGD on airbench's triangular
  rate peaking at 0.375, label smoothing 0.2, the whitening bias frozen after 3 epochs, lookahead
  every 5 steps, 2000 images held out for the temperature.
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
from cifar.core.params import check_section, read_params_file


def main(argv=None):
    cli.parser("stages.train", __doc__).parse_args(argv)
    # After the arguments: TensorFlow takes seconds to import, and --help needs none of it.
    from cifar import models
    from cifar.training.loop import train

    params = read_params_file()
    models.refuse_renamed(params)
    settings = check_section(params, "train", models.TRAIN_RULES)
    name = settings["model"]
    train(models.model(name), settings, models.recipe(name, params), Artifacts())


if __name__ == "__main__":
    sys.exit(cli.run(main))
