"""The library behind the pipeline's stages, organised by concern:

core/         params, the table of artifact paths, atomic writes, errors, the command line, the CPU
data/         dataset sources and formats, decoding, the prepared arrays
models/       one module per `train.model` name: its network, its recipe's rules, its optimizer
network/      what every stage needs of a network: the input layers, loading a trained model
training/     the training loop and its mechanics: resume, precision, distribution, callbacks
calibration/  temperature scaling, fitted at the end of training
evaluation/   metrics, reliability (ECE), failure modes, Grad-CAM, test-time augmentation
robustness/   the corruptions and the accuracy under them
export/       SavedModel and TFLite conversion, every format run the same way
visualization/ maximum stimuli
figures/      every matplotlib figure
reporting/    the comparison report

TensorFlow reads its environment when it is first imported, so it is set here, before
any module of the package imports it; a value already in the environment wins.
"""

import os

from cifar.core.tensorflow_log import quiet_tensorflow

quiet_tensorflow()  # the user's terminal shows the project's own lines (cifar/core/tensorflow_log.py)
# TensorFlow turns oneDNN on only for CPUs with AVX512/AMX. On an AVX2 machine turning it on
# measured 1.3-1.9x faster training and 1.6x faster stimuli (docs/speed.md).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
