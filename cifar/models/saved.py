"""Loading a trained model file, with one clear error line for a missing or damaged one."""

from pathlib import Path

import keras

from cifar.core.errors import PipelineError
from cifar.models import layers  # noqa: F401  registers our layers, which saved fast models hold


def load_trained_model(model_file):
    """keras.models.load_model, or PipelineError naming the file."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise PipelineError(f"{model_file}: model not found; run `dvc repro` (or `dvc pull`) first")
    try:
        return keras.models.load_model(model_file)
    except Exception as err:  # Keras raises many types for a damaged file
        raise PipelineError(f"{model_file}: cannot load the model: {err}") from err
