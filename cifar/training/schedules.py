"""Learning-rate schedules: the tutorial's exponential decay per epoch, and warm-up then cosine decay per step."""

import keras


def exponential(learning_rate, decay):
    """The tutorial's schedule: the rate of epoch e is INIT_LR * decay ** e."""
    return lambda epoch: learning_rate * decay**epoch


def warmup_cosine(learning_rate, warmup_steps, total_steps, final_fraction=0.0):
    """Linear warm-up from 0 to `learning_rate`, then cosine decay to `final_fraction` of it at the last step."""
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=final_fraction,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )
