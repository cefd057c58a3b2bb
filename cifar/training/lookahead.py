"""airbench's lookahead: every few steps, pull the weights towards a slow moving average of them.

From epoch `start_epoch` on, every `every` steps: average <- average + (1 - rho) * (weights -
average), then weights <- average, with rho = decay ** every * (step / total steps) ** power,
so the average follows the weights closely at first and holds on to them at the end. The
BatchNorm statistics are averaged with the weights, as airbench averages its whole state_dict.
The last step of every epoch copies the average back before validation and the checkpoint.

At every epoch's end the weights equal the average, so a run resumed from a checkpoint
restarts the average from its weights and goes on exactly as an uninterrupted run.
"""

import keras
import numpy as np

FLOAT_TYPES = ("float16", "bfloat16", "float32", "float64")


class Lookahead(keras.callbacks.Callback):
    def __init__(self, every, start_epoch, decay, power, steps_per_epoch, epochs):
        super().__init__()
        self.every, self.start_epoch, self.decay, self.power = every, start_epoch, decay, power
        self.steps_per_epoch = steps_per_epoch
        self.total_steps = steps_per_epoch * epochs
        self.average = None

    def state_variables(self):
        """Every float variable of the model: weights and BatchNorm statistics, not the seed generators' states."""
        return [v for v in self.model.variables if keras.backend.standardize_dtype(v.dtype) in FLOAT_TYPES]

    def on_epoch_begin(self, epoch, logs=None):
        # Past the first epoch of averaging the weights equal the average here: start it from them (on resume too).
        self.epoch = epoch
        self.average = self.copy_of_weights() if epoch > self.start_epoch else None

    def copy_of_weights(self):
        return [np.array(v.numpy()) for v in self.state_variables()]  # copies, not views of the variables

    def on_train_batch_end(self, batch, logs=None):
        if self.epoch < self.start_epoch:
            return
        step = self.epoch * self.steps_per_epoch + batch + 1
        if step % self.every == 0:
            if self.average is None:
                self.average = self.copy_of_weights()
            else:
                rho = self.decay**self.every * (step / self.total_steps) ** self.power
                self.pull(rho)
        if batch + 1 == self.steps_per_epoch and self.average is not None:
            self.pull(1.0)

    def pull(self, rho):
        """average <- lerp(average, weights, 1 - rho); weights <- average."""
        updated = []
        for variable, average in zip(self.state_variables(), self.average):
            value = average + (1 - rho) * (variable.numpy() - average)
            variable.assign(value)
            updated.append(value)
        self.average = updated
