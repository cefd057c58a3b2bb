"""Run any format the export stage writes, the same way: class probabilities of uint8 images.

.keras (Keras), .tflite (the LiteRT interpreter, float32 or int8), or a SavedModel directory.
"""

import os
import time
from pathlib import Path

import numpy as np

from cifar.core.errors import PipelineError


class KerasClassifier:
    def __init__(self, path):
        from cifar.network.trained import load_trained_model

        self.model = load_trained_model(path)

    def predict(self, images, batch_size=256):
        return self.model.predict(images, batch_size=batch_size, verbose=0)


class SavedModelClassifier:
    def __init__(self, path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))  # kept: its function needs the object's variables
        self.serve = self.loaded.serve

    def predict(self, images, batch_size=256):
        return np.concatenate(
            [self.serve(images[i : i + batch_size]).numpy() for i in range(0, len(images), batch_size)]
        )


class TFLiteClassifier:
    """The official LiteRT interpreter; a quantised output is turned back into probabilities."""

    def __init__(self, path):
        from ai_edge_litert.interpreter import Interpreter

        # Every core of the machine: LiteRT's default is one thread, half the work of this 2-core CPU
        # (measured: the int8 model's 10,000 test images in 2.3 s, 1.2 s on 2 threads, Intel Xeon AMX).
        self.interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        output = self.interpreter.get_output_details()[0]
        self.output, (self.scale, self.zero_point) = output["index"], output["quantization"]
        self.batch = None

    def predict(self, images, batch_size=256):
        return np.concatenate([self._run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])

    def _run(self, batch):
        if self.batch != len(batch):
            self.interpreter.resize_tensor_input(self.input, batch.shape)
            self.interpreter.allocate_tensors()
            self.batch = len(batch)
        self.interpreter.set_tensor(self.input, np.ascontiguousarray(batch, np.uint8))
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output)
        return (out.astype(np.float32) - self.zero_point) * self.scale if self.scale else out.astype(np.float32)


def load_classifier(path):
    """The classifier of a model file or SavedModel directory; PipelineError if it is none of them."""
    path = Path(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return SavedModelClassifier(path)
    if path.suffix == ".tflite" and path.is_file():
        try:
            return TFLiteClassifier(path)
        except (ValueError, RuntimeError) as err:
            raise PipelineError(f"{path}: cannot load the TFLite model: {err}") from err
    if path.suffix == ".keras" or not path.exists():
        return KerasClassifier(path)  # names a missing file in one line
    raise PipelineError(f"{path}: not a model: expected a .keras or .tflite file or a SavedModel directory")


def single_image_latency(classifier, image, runs=100):
    """Median seconds of one prediction of one image, after a warm-up."""
    batch = image[None]
    for _ in range(5):
        classifier.predict(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        classifier.predict(batch)
        times.append(time.perf_counter() - start)
    return float(np.median(times))
