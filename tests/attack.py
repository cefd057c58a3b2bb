"""Run a real stage in its own process with a kill planted at an exact point of its code.

    python -m tests.attack <point> <stage>

The stage runs as `python -m stages.<stage>` would (same main, same outputs), except
that at <point> the process SIGKILLs itself: nothing is cleaned up, no handler runs,
as when the machine loses power or the OOM killer strikes.
  final-rename   just before the rename that puts the finished file at its real name
                 (its data fully written to the temporary file), for the stage's last output
  after-checkpoint  right after the first epoch's checkpoint is in place (train only)
  mid-write      halfway through writing the bytes of the first .npy output
  mid-epoch      in the middle of the second epoch (train only)
"""

import importlib
import os
import signal
import sys


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def plant(point, stage):
    import cifar.core.atomic as atomic

    if point in ("final-rename", "after-checkpoint"):
        real_replace = atomic.os.replace
        final = {"train": "model.keras", "preprocess": "stats.json"}[stage]

        def replace(src, dst):
            if point == "final-rename" and os.path.basename(dst) == final:
                die()
            real_replace(src, dst)
            if point == "after-checkpoint" and os.path.basename(dst) == "epoch-0001.keras":
                die()

        atomic.os.replace = replace
    elif point == "mid-write":
        real_save = atomic.np.save

        def save(file, array, **kwargs):
            import io

            buffer = io.BytesIO()
            real_save(buffer, array, **kwargs)
            data = buffer.getvalue()
            file.write(data[: len(data) // 2])
            file.flush()
            die()

        atomic.np.save = save
    elif point == "mid-epoch":
        import keras

        import cifar.training.loop as loop

        class KillMidEpoch(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == 1 and batch == 2:
                    die()

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

        real_train = loop.train
        loop.train = lambda *args, callbacks=(), **kwargs: real_train(
            *args, callbacks=[*callbacks, KillMidEpoch()], **kwargs
        )
    else:
        raise SystemExit(f"unknown point {point!r}")


if __name__ == "__main__":
    point, stage = sys.argv[1:3]
    import cifar  # noqa: F401  (the stage's environment, as `python -m stages.<stage>` sets it)
    from cifar.core import cli

    plant(point, stage)
    sys.exit(cli.run(importlib.import_module(f"stages.{stage}").main, []))  # as each stage's __main__ does
