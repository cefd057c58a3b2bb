"""TensorFlow's run-time settings, the same for every stage and benchmark that trains or ascends."""

import tensorflow as tf


def configure_tensorflow():
    """Deterministic ops (same params, same results), and no grappler remapper.

    With oneDNN on (cifar/__init__.py), the remapper fails on every graph holding a
    LeakyReLU gradient and logs an error; it then leaves that graph unfused anyway, so
    turning it off changes no arithmetic and no speed (measured), only the noise in the log.
    """
    tf.config.experimental.enable_op_determinism()
    tf.config.optimizer.set_experimental_options({"remapping": False})
