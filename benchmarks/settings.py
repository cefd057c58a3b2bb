"""The settings a timing depends on, recorded beside every benchmark result."""

import os

from cifar.core.cpu import BF16_CPU_FLAGS, cpu_flags, cpu_model, describe_cpu

CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels in this process (None if it cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port  # no public API says it
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


def settings():
    import tensorflow as tf

    flags = cpu_flags()
    return {
        "cpu": describe_cpu(),
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "cpu_features": [flag for flag in CPU_FEATURES if flag in flags],
        "bfloat16_units": [flag for flag in BF16_CPU_FLAGS if flag in flags],
        "tensorflow": tf.__version__,
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS") or "(TensorFlow's default)",
        "onednn": onednn_enabled(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "(default: all cores)",
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "(default)",
    }
