"""Where a model's class scores are: the input of its final softmax (both models of the zoo end in a
separate softmax layer, so temperature scaling, TTA's logit average, Grad-CAM and the class
stimuli can all reach the scores before it)."""

import keras


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
