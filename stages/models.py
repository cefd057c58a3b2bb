"""Model builders, chosen by `train.model`. Every model takes raw uint8 pixels."""

from pathlib import Path

import keras
from keras import layers

from stages.errors import PipelineError
from stages.params import MODEL_NAMES

INPUT_SHAPE = (32, 32, 3)
MODEL_FILE = Path("models/model.keras")


def normalized_input(name="image"):
    """uint8 image input followed by the tutorial's normalisation x/255 - 0.5."""
    inputs = keras.Input(INPUT_SHAPE, dtype="uint8", name=name)
    return inputs, layers.Rescaling(1 / 255, offset=-0.5, name="normalize")(inputs)


def seed_cnn(num_classes=10):
    """The tutorial's CNN, layer for layer (1,084,234 trainable parameters for 10 classes)."""
    inputs, x = normalized_input()
    counters = {}

    def add(layer_cls, *args, **kwargs):
        # Names as in the tutorial's summary: conv2d_1, leaky_re_lu_1, ...
        base = {
            "Conv2D": "conv2d",
            "LeakyReLU": "leaky_re_lu",
            "MaxPooling2D": "max_pooling2d",
            "Dropout": "dropout",
            "Flatten": "flatten",
            "Dense": "dense",
            "Activation": "activation",
        }[layer_cls.__name__]
        counters[base] = counters.get(base, 0) + 1
        return layer_cls(*args, name=f"{base}_{counters[base]}", **kwargs)

    x = add(layers.Conv2D, 16, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Conv2D, 32, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.MaxPooling2D, 2)(x)
    x = add(layers.Dropout, 0.25)(x)
    x = add(layers.Conv2D, 32, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Conv2D, 64, 3, padding="same")(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.MaxPooling2D, 2)(x)
    x = add(layers.Dropout, 0.25)(x)
    x = add(layers.Flatten)(x)
    x = add(layers.Dense, 256)(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    x = add(layers.Dropout, 0.5)(x)
    x = add(layers.Dense, num_classes)(x)
    x = add(layers.LeakyReLU, 0.1)(x)
    outputs = add(layers.Activation, "softmax", dtype="float32")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


def build_model(name, num_classes, recipe=None, train_images=None, seed=0, replicas=1):
    """A fresh model `name`; the fast model also takes its recipe, the training images it whitens,
    and the number of replicas it trains on (its BatchNorm then synchronises them)."""
    if name == "seed_cnn":
        return seed_cnn(num_classes)
    if name == "fast":
        from stages.fast_net import fast_cnn

        return fast_cnn(num_classes, recipe, train_images, seed, sync_batchnorm=replicas > 1)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODEL_NAMES)}")


def load_trained_model(model_file=MODEL_FILE):
    """keras.models.load_model, with one clear error line for a missing or damaged file."""
    model_file = Path(model_file)
    if not model_file.is_file():
        raise PipelineError(f"{model_file}: model not found; run `dvc repro` (or `dvc pull`) first")
    from stages import fast_net  # noqa: F401  registers the fast model's custom layer for loading

    try:
        return keras.models.load_model(model_file)
    except Exception as err:  # Keras raises many types for a damaged file
        raise PipelineError(f"{model_file}: cannot load the model: {err}") from err
