"""The library behind the pipeline's stages, organised by concern:

core/         params, artifact paths, atomic writes, errors, the command line: what every stage uses
data/         dataset sources and formats, decoding, the prepared arrays
models/       the networks, and the registry saying what each `train.model` name means
training/     the training loop and its mechanics: resume, precision, distribution, callbacks
evaluation/   metrics and test-time augmentation
visualization/ maximum stimuli
figures/      every matplotlib figure
reporting/    the comparison report

TensorFlow reads its environment when it is first imported, so it is set here, before
any module of the package imports it; a value already in the environment wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the logs
# TensorFlow turns oneDNN on only for CPUs with AVX512/AMX. On an AVX2 machine turning it on
# measured 1.3-1.9x faster training and 1.6x faster stimuli (docs/speed.md).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
