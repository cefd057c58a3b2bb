"""The official CIFAR-10 binary version: data_batch_1.bin ... data_batch_5.bin, test_batch.bin, batches.meta.txt.

Each .bin file is a run of records of 1 label byte and 3072 pixel bytes (the red plane, then green,
then blue, each 32x32 row by row); batches.meta.txt names the classes, one per line.
"""

import numpy as np

from cifar.core.errors import PipelineError

IMAGE_SIZE = 32
RECORD_BYTES = 1 + 3 * IMAGE_SIZE * IMAGE_SIZE
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
META_FILE = "batches.meta.txt"
FILES = [*TRAIN_FILES, TEST_FILE, META_FILE]


def parse_batch(data, source, num_classes):
    """(images uint8 [N,32,32,3], labels int64 [N]) of one .bin file; PipelineError unless it is whole records."""
    if len(data) == 0 or len(data) % RECORD_BYTES:
        raise PipelineError(
            f"{source}: {len(data)} bytes is not a whole number of {RECORD_BYTES}-byte records "
            "(1 label byte + 3072 pixel bytes)"
        )
    records = np.frombuffer(data, np.uint8).reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.max() >= num_classes:
        raise PipelineError(f"{source}: labels must be in 0..{num_classes - 1}; found {labels.max()}")
    images = records[:, 1:].reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def parse_meta(data, source):
    """The class names of batches.meta.txt: its non-empty lines."""
    try:
        names = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as err:
        raise PipelineError(f"{source}: not a text file of class names: {err}") from err
    if not names:
        raise PipelineError(f"{source}: no class names")
    return names
