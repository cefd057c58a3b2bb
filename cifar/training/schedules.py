"""Learning-rate schedules: the tutorial's exponential decay per epoch; warm-up and cosine, or airbench's triangle."""

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


def recipe_warmup_cosine(recipe, steps_per_epoch, final_fraction=0.0):
    """warmup_cosine per step for a recipe: its `learning_rate`, `warmup_epochs` and `epochs`."""
    total = recipe["epochs"] * steps_per_epoch
    warmup = round(recipe["warmup_epochs"] * steps_per_epoch)
    return warmup_cosine(recipe["learning_rate"], warmup, total, final_fraction)


@keras.saving.register_keras_serializable(package="cifar")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """airbench's schedule: linear from `initial_fraction` of the peak up to it at `peak_step`, then linear
    down to `final_fraction` of it at `total_steps` (its `triangle`, piecewise linear in both halves).
    Registered so that checkpoints, which hold the optimizer, load it back.
    """

    def __init__(self, learning_rate, peak_step, total_steps, initial_fraction, final_fraction):
        self.learning_rate = float(learning_rate)
        self.peak_step = int(peak_step)
        self.total_steps = int(total_steps)
        self.initial_fraction = float(initial_fraction)
        self.final_fraction = float(final_fraction)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        peak = max(self.peak_step, 1e-9)  # a peak at step 0: no rise
        rising = self.initial_fraction + (1 - self.initial_fraction) * step / peak
        falling_steps = max(self.total_steps - self.peak_step, 1)
        falling = 1 + (self.final_fraction - 1) * (step - self.peak_step) / falling_steps
        fraction = keras.ops.where(step < self.peak_step, rising, keras.ops.maximum(falling, self.final_fraction))
        return self.learning_rate * fraction

    def get_config(self):
        return {
            "learning_rate": self.learning_rate,
            "peak_step": self.peak_step,
            "total_steps": self.total_steps,
            "initial_fraction": self.initial_fraction,
            "final_fraction": self.final_fraction,
        }
