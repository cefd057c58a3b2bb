"""Run a stage module with the CPU split into two logical devices, as two GPUs would be:

python -m tests.two_cpus stages.train
"""

import runpy
import sys

import stages  # noqa: F401  (TensorFlow's environment, before TensorFlow is imported)
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__")
