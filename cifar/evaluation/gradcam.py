"""Grad-CAM (Selvaraju et al., 2017): where in the image the evidence for a class lies.

The gradient of the class score (before the softmax) with respect to the last convolutional
activation, averaged over its positions, weighs each of that layer's channels; their weighted
sum, through a ReLU and enlarged to the image, is the heatmap.
"""

import keras
import numpy as np
import tensorflow as tf

from cifar.network.trained import class_score_tensor
from cifar.visualization.gradient_ascent import conv_activation_layers


def last_conv_activation(model):
    layers = conv_activation_layers(model)
    if not layers:
        raise ValueError(f"{model.name}: no convolutional activation layer for Grad-CAM")
    return layers[-1]


def grad_cam(model, images, classes, batch_size=64):
    """Heatmaps (N, H, W) in [0, 1] of class `classes[i]` for `images[i]` (uint8, as the model takes them)."""
    probe = keras.Model(model.inputs, [last_conv_activation(model).output, class_score_tensor(model)])
    heatmaps = [
        _batch_cams(probe, images[start : start + batch_size], classes[start : start + batch_size])
        for start in range(0, len(images), batch_size)
    ]
    return np.concatenate(heatmaps) if heatmaps else np.zeros((0, *images.shape[1:3]), np.float32)


def _batch_cams(probe, images, classes):
    batch = tf.convert_to_tensor(images)
    with tf.GradientTape() as tape:
        activation, scores = probe(batch, training=False)
        score = tf.gather(tf.cast(scores, tf.float32), np.asarray(classes, np.int32), axis=1, batch_dims=1)
    gradients = tf.cast(tape.gradient(score, activation), tf.float32)
    weights = tf.reduce_mean(gradients, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(activation, tf.float32), axis=-1))
    cam = tf.image.resize(cam[..., None], batch.shape[1:3], method="bilinear")[..., 0]
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    return (cam / tf.maximum(peak, 1e-12)).numpy()
