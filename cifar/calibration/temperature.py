"""Temperature scaling (Guo et al., 2017, "On Calibration of Modern Neural Networks"), held by the model.

The class scores are divided by one temperature T > 0 before the softmax: the top class never
changes, only how sure the probabilities are. The model gets a float32 `temperature` layer
(Rescaling by 1/T) between its scores and its final softmax, so that every use of the saved
model (evaluate, predict, the exported SavedModel and TFLite files) applies it.
"""

import keras
import numpy as np

from cifar.core.errors import PipelineError
from cifar.network.trained import final_softmax

LAYER = "temperature"


def score_model(model):
    """The model up to its class scores (the input of the final softmax), or PipelineError."""
    softmax = final_softmax(model)
    if softmax is None:
        raise PipelineError(f"model {model.name}: temperature scaling needs a last layer that is a softmax alone")
    return keras.Model(model.inputs, softmax.input)


def with_temperature(model, temperature):
    """`model` with its class scores divided by `temperature` before the final softmax (same weights,
    and the same optimizer and loss when it was compiled)."""
    scores = score_model(model).output
    scaled = keras.layers.Rescaling(1 / temperature, dtype="float32", name=LAYER)(scores)
    outputs = keras.layers.Activation("softmax", dtype="float32", name=model.layers[-1].name)(scaled)
    scaled_model = keras.Model(model.inputs, outputs, name=model.name)
    if getattr(model, "optimizer", None) is not None:
        scaled_model.compile(optimizer=model.optimizer, loss=model.loss)
    return scaled_model


def temperature_of(model):
    """The temperature a model holds (1.0 without a temperature layer)."""
    try:
        return 1 / float(model.get_layer(LAYER).scale)
    except ValueError:
        return 1.0


def fit_temperature(scores, labels):
    """Guo et al.'s temperature: the T > 0 that minimises the NLL of softmax(scores / T) on held-out
    images (`scores`: their class scores before the softmax). The NLL is convex in 1/T, so a bounded
    scalar search on log T finds its one minimum (T from 0.01 to 100)."""
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    scores, labels = np.asarray(scores, np.float64), np.asarray(labels)

    def nll(log_temperature):
        return -np.mean(log_softmax(scores / np.exp(log_temperature), axis=1)[np.arange(len(labels)), labels])

    found = minimize_scalar(nll, bounds=(np.log(0.01), np.log(100)), method="bounded", options={"xatol": 1e-7})
    return float(np.exp(found.x))


def without_temperature(probabilities, temperature):
    """The probabilities the model gave before its temperature: softmax(T * log p) = softmax(scores)."""
    if temperature == 1.0:
        return probabilities
    from scipy.special import softmax

    logs = np.log(np.maximum(np.asarray(probabilities, np.float64), np.finfo(np.float64).tiny))
    return softmax(temperature * logs, axis=1)


def holdout_split(count, holdout, seed):
    """(training indices, held-out indices) of `count` training images: `holdout` of them chosen by
    `seed` (none when 0), both in order."""
    if holdout == 0:
        return np.arange(count), np.arange(0)
    if holdout >= count:
        raise PipelineError(
            f"params.yaml: calibration_images is {holdout}, not fewer than the {count} training images; "
            f"allowed: 0 (off) to {count - 1}"
        )
    order = np.random.default_rng([seed, 7]).permutation(count)
    return np.sort(order[holdout:]), np.sort(order[:holdout])


def calibrated(model, images, labels, batch_size=256, progress=print):
    """`model` with the temperature fitted on `images` (held out of training), and that temperature."""
    scores = score_model(model).predict(images, batch_size=batch_size, verbose=0)
    temperature = fit_temperature(scores, labels)
    progress(f"temperature scaling: T = {temperature:.4f}, fitted on {len(images)} held-out training images")
    return with_temperature(model, temperature), temperature
