"""What the training loop reads of every model's recipe; each model's `Recipe` extends it with its own keys."""

from dataclasses import dataclass

from cifar.core.params import boolean, non_negative_int, param, positive_int


@dataclass(frozen=True)
class TrainingRecipe:
    epochs: int = param(positive_int())
    batch_size: int = param(positive_int())  # the global batch, split between the replicas
    # training images held out of training to fit the temperature (cifar/calibration); 0 = off
    calibration_images: int = param(non_negative_int("an integer >= 0 (0 = no temperature scaling)"))
    # the test set classified after every epoch (the history's per-epoch test curves), or after the last only
    test_every_epoch: bool = param(boolean())
