"""The rules of params.yaml's `train` section; the chosen model's own section has its recipe's rules."""

from cifar.core.params import choice, non_negative_int
from cifar.models.registry import MODEL_RULE
from cifar.training.distribute import STRATEGIES
from cifar.training.precision import CHOICES as PRECISIONS

TRAIN = {
    "model": MODEL_RULE,
    "precision": choice(*PRECISIONS),
    "strategy": choice(*STRATEGIES),
    "seed": non_negative_int(),
}
