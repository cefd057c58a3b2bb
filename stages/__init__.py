"""Stage scripts of the CIFAR-10 pipeline; each module with a main() is one DVC stage.

TensorFlow reads its environment when it is first imported, so it is set here,
before any stage imports it; a value already in the environment wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the logs
