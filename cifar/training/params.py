"""The rules of params.yaml's `train` section but `model` (cifar.zoo.MODEL_RULE: the zoo's names);
the chosen model's own section has its recipe's rules."""

from cifar.core.params import choice, non_negative_int
from cifar.training.distribute import STRATEGIES
from cifar.training.precision import CHOICES as PRECISIONS

TRAIN = {
    "precision": choice(*PRECISIONS),
    "strategy": choice(*STRATEGIES),
    "seed": non_negative_int(),
}
