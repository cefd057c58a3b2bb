"""Stage scripts of the CIFAR-10 pipeline; each module with a main() is one DVC stage.

TensorFlow reads these settings when it is first imported, so they are set here,
before any stage imports it; a value already in the environment wins.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the logs
# oneDNN's fp32 kernels ran seed_cnn 1.4x slower than Eigen's on the AVX2-only CPU here
# (benchmarks/ measures both); TF_ENABLE_ONEDNN_OPTS=1 turns them back on.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
