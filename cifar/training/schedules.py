"""Learning-rate schedules more than one model offers: a linear warm-up, then a cosine decay."""

import keras

from cifar.core.params import Rule

# The rule of a recipe's `warmup_epochs`, the warm-up of warmup_cosine_in_epochs
WARMUP_EPOCHS = Rule((int, float), "a number of epochs from 0 to 100", minimum=0, maximum=100)


def warmup_cosine(learning_rate, warmup_steps, total_steps, final_fraction=0.0):
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to `final_fraction` of it at the last step."""
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=final_fraction,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def warmup_cosine_in_epochs(learning_rate, warmup_epochs, epochs, steps_per_epoch, final_fraction=0.0):
    """warmup_cosine per step, its warm-up and length given in epochs (a recipe's `warmup_epochs`, `epochs`)."""
    warmup = round(warmup_epochs * steps_per_epoch)
    return warmup_cosine(learning_rate, warmup, epochs * steps_per_epoch, final_fraction)
