"""The input every model starts with: raw uint8 pixels, normalised inside the model."""

import keras
from keras import layers

INPUT_SHAPE = (32, 32, 3)


def normalized_input(name="image"):
    """uint8 image input followed by the tutorial's normalisation x/255 - 0.5 (layer 'normalize')."""
    inputs = keras.Input(INPUT_SHAPE, dtype="uint8", name=name)
    return inputs, layers.Rescaling(1 / 255, offset=-0.5, name="normalize")(inputs)
