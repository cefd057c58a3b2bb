"""Stage scripts of the CIFAR-10 pipeline; each module with a main() is one DVC stage.

TensorFlow reads its environment when it is first imported, so it is set here,
before any stage imports it; a value already in the environment wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the logs
# TensorFlow turns oneDNN on only for CPUs with AVX512/AMX. On this AVX2 machine turning it on
# measured 1.3-1.9x faster training and 1.6x faster stimuli (benchmarks/, README "Speed").
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
