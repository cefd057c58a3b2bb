"""What the CPU is, from Linux's /proc/cpuinfo: its model and feature flags, and its bfloat16 units.

Written beside every timing and training run (figures from different CPUs are not comparable), and
read by `train.precision: auto`. Needs no TensorFlow.
"""

import os
import platform
from pathlib import Path

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# A file read in place of /proc/cpuinfo: lets a test (or a user checking what `auto` would do)
# show the pipeline another CPU, e.g. one with bfloat16 units, without that CPU.
CPUINFO_ENV = "CIFAR_CPUINFO"


def cpuinfo_path():
    return Path(os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo")


def _cpuinfo_field(name, cpuinfo=None):
    """The value of the first `name` line of /proc/cpuinfo (Linux), or None."""
    try:
        text = Path(cpuinfo or cpuinfo_path()).read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return None


def cpu_flags(cpuinfo=None):
    """The CPU's feature flags (Linux; empty elsewhere)."""
    return set((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo=None):
    """The CPU's model name, e.g. 'AMD EPYC 7B13' (Linux), else what the platform says."""
    return _cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def describe_cpu(cpuinfo=None):
    """The CPU and its bfloat16 units in one line, written beside every timing and training run."""
    flags = cpu_flags(cpuinfo)
    units = [flag for flag in BF16_CPU_FLAGS if flag in flags]
    return f"{cpu_model(cpuinfo)}; bfloat16 units: {', '.join(units) if units else 'none (emulated)'}"
