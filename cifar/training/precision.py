"""`train.precision`: the dtype policy Keras trains in.

bfloat16 halves the bytes moved and runs on the matrix units of recent hardware
(Intel AMX / AVX512-BF16, NVIDIA Ampere and later). Elsewhere it is emulated and
slower, so `auto` picks it only where the hardware has it. The softmax and the
loss stay float32 in every policy (the model's last layer is float32).
"""

import platform
from contextlib import contextmanager

from cifar.core.cpu import BF16_CPU_FLAGS, cpu_flags

CHOICES = ("auto", "float32", "mixed_bfloat16")
BF16_GPU_CAPABILITY = (8, 0)  # Ampere


def gpu_capabilities():
    """Compute capabilities of the visible GPUs, e.g. [(8, 0)]."""
    import tensorflow as tf

    found = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability:
            found.append(tuple(capability))
    return found


def resolve(setting, flags=None, gpus=None, system=None):
    """The policy `setting` means on this machine: 'float32' or 'mixed_bfloat16'.

    `auto` is bfloat16 where units make it fast: NVIDIA GPUs of compute capability 8.0 (Ampere) or
    later, else x86-64 CPUs with AMX or AVX512-BF16 (the `flags` of Linux's /proc/cpuinfo). It is
    float32 elsewhere, deliberately: on macOS (Apple Silicon: no /proc/cpuinfo, no CUDA GPU) and on
    Linux on Arm (whose cpuinfo lists `Features`, not `flags`), TensorFlow's bfloat16 speed is
    unmeasured here, and float32 is never slower than an emulated bfloat16.
    """
    if setting != "auto":
        return setting
    gpus = gpu_capabilities() if gpus is None else gpus
    if gpus:
        return "mixed_bfloat16" if all(c >= BF16_GPU_CAPABILITY for c in gpus) else "float32"
    if (platform.system() if system is None else system) == "Darwin":
        return "float32"
    flags = cpu_flags() if flags is None else flags
    return "mixed_bfloat16" if any(flag in flags for flag in BF16_CPU_FLAGS) else "float32"


@contextmanager
def building_with(policy):
    """Keras's global dtype policy set to `policy` while models are built, restored after.

    Layers keep the policy they were built with (and a saved model stores it), so only
    construction needs it; restoring keeps it from leaking into later, unrelated models.
    """
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)
