"""Run a stage module as its own process would, with instruments for the tests:

    python -m tests.instrumented [--cpus N] [--no-dropout] [--all-reduce-log FILE] [--modules-log FILE]
                                 [--record-steps FILE] [--kill-after-step N] [--newton-schulz-float32] stages.train

--cpus N            split the CPU into N logical devices, as N GPUs would be: MirroredStrategy then
                    trains N replicas in this process.
--no-dropout        Dropout passes its input through. Each replica draws its dropout mask from the same
                    seed state, so N devices cannot draw the masks one device draws; without dropout
                    they compute the same function, and their weights can be compared.
--all-reduce-log F  write, when the stage ends, the dtype of every value all-reduced across replicas
                    (gradients, synchronised BatchNorm sums) to F as a JSON list.
--modules-log F     write, when the stage ends, the project files of every module it imported
                    (paths relative to the project; this runner's own files left out) to F as a JSON list.
--record-steps F    after every training step, each local replica's copy of every variable of the model and
                    of its optimizer, and the optimizer's rate for the next step, saved to F (.npz, see
                    StepRecorder) when training ends.
--newton-schulz-float32  airbench94_muon's Newton-Schulz without its rounding to bfloat16 after every op: one
                    device's distance from the recipe's own run is what bfloat16's rounding there does.
--kill-after-step N SIGKILL this process right after training step N (counted from 1 over the run), as a
                    power cut would: every worker of a cluster reaches that step together.
"""

import argparse
import json
import os
import runpy
import signal
import sys
from pathlib import Path

import cifar  # noqa: F401  (TensorFlow's environment, before TensorFlow is imported)

# isort: split
import keras
import numpy as np
import tensorflow as tf

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # not stages.codegraph's: the log would list it


def split_cpu(count):
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def record_all_reduces(log):
    """Every ReplicaContext.all_reduce (Keras's gradient sum and BatchNorm's synchronised moments use it)."""
    original = tf.distribute.ReplicaContext.all_reduce

    def all_reduce(self, reduce_op, value, options=None):
        log.extend(tensor.dtype.name for tensor in tf.nest.flatten(value))
        return original(self, reduce_op, value, options)

    tf.distribute.ReplicaContext.all_reduce = all_reduce


class StepRecorder(keras.callbacks.Callback):
    """Each step's state as this process holds it, keyed "<step>|<variable path>|<replica>" (step from 1;
    replica: the index of the local copy, one per device of a MirroredStrategy, one per worker process
    of a multi-worker one), and "<step>|rate" (the learning rate the optimizer gives its next step)."""

    def __init__(self, path):
        super().__init__()
        self.path, self.arrays, self.step = path, {}, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        optimizer = self.model.optimizer
        for variable in [*self.model.weights, *optimizer.variables]:
            local = getattr(variable.value, "values", None) or (variable.value,)  # a distributed variable's copies
            for replica, value in enumerate(local):
                self.arrays[f"{self.step}|{variable.path}|{replica}"] = value.numpy()
        self.arrays[f"{self.step}|rate"] = float(optimizer.learning_rate)

    def on_train_end(self, logs=None):
        with open(self.path, "wb") as file:
            np.savez(file, **self.arrays)


class KillAfterStep(keras.callbacks.Callback):
    def __init__(self, step):
        super().__init__()
        self.kill_at, self.step = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def add_callbacks(callbacks):
    """Every training run of this process also gets `callbacks` (after the loop's own)."""
    import cifar.training.loop as loop

    real_fit = loop.fit
    loop.fit = lambda run, network, done, history, extra=(), *args: real_fit(
        run, network, done, history, [*extra, *callbacks], *args
    )


def project_modules(main_module):
    """Project files of the modules imported so far and of `main_module` (run as __main__), relative to
    the project; tests/ and hidden folders (the virtualenv) left out."""
    found = {Path(*main_module.split(".")).with_suffix(".py").as_posix()}
    for module in list(sys.modules.values()):
        path = Path(getattr(module, "__file__", None) or "/").resolve()
        if not path.is_relative_to(PROJECT_ROOT):
            continue
        relative = path.relative_to(PROJECT_ROOT)
        if relative.parts[0] != "tests" and not relative.parts[0].startswith("."):
            found.add(relative.as_posix())
    return sorted(found)


def main():
    parser = argparse.ArgumentParser(prog="python -m tests.instrumented")
    parser.add_argument("--cpus", type=int, default=1)
    parser.add_argument("--no-dropout", action="store_true")
    parser.add_argument("--all-reduce-log", type=Path)
    parser.add_argument("--modules-log", type=Path)
    parser.add_argument("--record-steps", type=Path)
    parser.add_argument("--kill-after-step", type=int)
    parser.add_argument("--newton-schulz-float32", action="store_true")
    parser.add_argument("module")
    args = parser.parse_args()
    if args.cpus > 1:
        split_cpu(args.cpus)
    if args.no_dropout:
        keras.layers.Dropout.call = lambda self, inputs, training=False: inputs
    if args.newton_schulz_float32:
        import cifar.models.airbench94_muon as airbench94_muon

        airbench94_muon.bfloat16 = lambda x: x
    callbacks = [StepRecorder(args.record_steps)] if args.record_steps else []
    callbacks += [KillAfterStep(args.kill_after_step)] if args.kill_after_step else []
    add_callbacks(callbacks)
    log = []
    if args.all_reduce_log:
        record_all_reduces(log)
    sys.argv = [args.module]
    try:
        runpy.run_module(args.module, run_name="__main__")
    finally:
        if args.all_reduce_log:
            args.all_reduce_log.write_text(json.dumps(log))
        if args.modules_log:
            args.modules_log.write_text(json.dumps(project_modules(args.module)))


if __name__ == "__main__":
    main()
