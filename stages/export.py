"""Stage export: the trained model as a TensorFlow SavedModel and as TFLite, float32 and int8.

Reads the model, the prepared training images (a random `export.representative_images` of them
calibrate the int8 model's activation ranges) and test set, and params.yaml's `export` section.
Writes models/export/saved_model/, models/export/model.tflite, models/export/model_int8.tflite, and
reports/export.json: for the Keras model and each export, its test accuracy, file size, the median
latency of one image on this machine's CPU (over `export.latency_runs`), and how often its top
class agrees with the Keras model's. A model trained in `mixed_bfloat16` is exported from a float32
copy of its weights (the formats have no bfloat16 kernels); the agreement is then with the model as
trained, in bfloat16, and `trained_precision` says so. `python -m stages.predict --model <file or
folder>` runs any.
"""

import sys

import numpy as np

from cifar.core import cli
from cifar.core.artifacts import Artifacts
from cifar.core.atomic import atomic_directory, atomic_path, write_json
from cifar.core.params import load_params, positive_int

# params.yaml's `export` section (each key is documented there)
EXPORT = {
    "representative_images": positive_int("an integer from 1 to 10000", maximum=10_000),
    "latency_runs": positive_int("an integer from 1 to 10000", maximum=10_000),
}


def export(settings, artifacts=Artifacts(), progress=print):
    from cifar.core.cpu import describe_cpu
    from cifar.export import convert
    from cifar.export.classifiers import load_classifier, single_image_latency
    from cifar.network.trained import computes_in_bfloat16, float32_copy

    arrays, _ = artifacts.load_prepared()
    keras_model = load_classifier(artifacts.model)
    representative = np.random.default_rng(0).permutation(len(arrays["x_train"]))[: settings["representative_images"]]
    trained_precision = "mixed_bfloat16" if computes_in_bfloat16(keras_model.model) else "float32"
    if trained_precision != "float32":
        progress("the model computes in bfloat16: exporting a float32 copy of its weights")
    with atomic_directory(artifacts.saved_model) as saved_model:
        convert.write_saved_model(float32_copy(keras_model.model), saved_model)
        progress("converting to TFLite: float32, then int8 ...")
        write_bytes(artifacts.tflite_float, convert.tflite_float(saved_model))
        write_bytes(artifacts.tflite_int8, convert.tflite_int8(saved_model, arrays["x_train"][representative]))
    write_json(artifacts.export_classes, artifacts.load_classes(artifacts.model_classes))  # for predict
    write_json(artifacts.export_input, artifacts.load_input(artifacts.model_input))
    reference = keras_model.predict(arrays["x_test"]).argmax(axis=1)
    record = {"cpu": describe_cpu(), "trained_precision": trained_precision}
    for name, path in (
        ("keras", artifacts.model),
        ("saved_model", artifacts.saved_model),
        ("tflite_float32", artifacts.tflite_float),
        ("tflite_int8", artifacts.tflite_int8),
    ):
        classifier = keras_model if name == "keras" else load_classifier(path)
        predicted = reference if name == "keras" else classifier.predict(arrays["x_test"]).argmax(axis=1)
        latency = single_image_latency(classifier, arrays["x_test"][0], settings["latency_runs"])
        record[name] = {
            "accuracy": round(float(np.mean(predicted == arrays["y_test"])), 6),
            "agreement_with_keras": round(float(np.mean(predicted == reference)), 6),
            "size_mb": round(size(path) / 2**20, 3),
            "latency_ms": round(1000 * latency, 3),
        }
        progress(f"{name}: {record[name]}")
    write_json(artifacts.export_record, record)
    return record


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def size(path):
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def main(argv=None):
    cli.parser("stages.export", __doc__).parse_args(argv)
    export(load_params({"export": EXPORT})["export"])


if __name__ == "__main__":
    sys.exit(cli.run(main))
