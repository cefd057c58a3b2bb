"""A trained model file: loading it (one clear error line for a missing or damaged one), computing it
in float32, and where its class scores are."""

from pathlib import Path

import keras

from cifar.core.errors import PipelineError
from cifar.network import layers  # noqa: F401  registers our layers, which saved airbench models hold


def load_trained_model(model_file):
    """The model of `model_file` for prediction, or PipelineError naming the file.

    Without its optimizer (`compile=False`): predicting needs none, and so no training code
    (an airbench model's optimizer is its model's code, in cifar/models).
    """
    model_file = Path(model_file)
    if not model_file.is_file():
        raise PipelineError(f"{model_file}: model not found; run `dvc repro` (or `dvc pull`) first")
    try:
        return keras.models.load_model(model_file, compile=False)
    except Exception as err:  # Keras raises many types for a damaged file
        raise PipelineError(f"{model_file}: cannot load the model: {err}") from err


def float32_copy(model):
    """`model` rebuilt with every layer computing in float32, holding the same weights.

    A model trained under `mixed_bfloat16` keeps float32 weights but computes in bfloat16, and
    the TFLite converter has no bfloat16 kernels (tf.Conv2D, tf.MatMul, ... on bf16 tensors are
    "neither a custom op nor a flex op"). Its weights are float32 already, so the copy is exact:
    only the arithmetic becomes float32, which is at least as precise as the trained model's.
    A float32 model is returned as it is.
    """
    if not computes_in_bfloat16(model):
        return model

    def in_float32(layer):
        config = layer.get_config()
        if not isinstance(layer, keras.layers.InputLayer):  # the input keeps its uint8
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    copy = keras.models.clone_model(model, clone_function=in_float32)
    copy.set_weights(model.get_weights())
    return copy


def computes_in_bfloat16(model):
    return any(layer.dtype_policy.compute_dtype == "bfloat16" for layer in model.layers)


# Where a model's class scores are: the input of its final softmax (both models end in a separate
# softmax layer, so temperature scaling, TTA's logit average, Grad-CAM and the class stimuli can all
# reach the scores before it).


def final_softmax(model):
    """The model's last layer if it is a separate softmax, else None."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return last
    if isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax":
        return last
    return None


def class_score_tensor(model):
    """The class scores before the softmax: the input of a final softmax layer, else the output."""
    softmax = final_softmax(model)
    return model.output if softmax is None else softmax.input
