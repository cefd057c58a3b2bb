"""The training batches: a reproducible shuffle per epoch, gathered from uint8 arrays in memory."""

from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class Batching:
    """How a model's training batches are drawn, beyond the shuffle (each model's `batching(recipe)`)."""

    alternating_flip: bool = False
    drop_last_batch: bool = False


def training_batches(x, y, batch_size, seed, first_epoch, epochs, batching=Batching()):
    """Shuffled batches for epochs first_epoch..epochs-1: uint8 images and one-hot labels.

    Each epoch's order is a stateless shuffle keyed by (seed, epoch), so a run
    resumed at epoch k sees exactly the batches an uninterrupted run would.
    The images stay uint8 in memory; batches are gathered on the fly.

    `batching.alternating_flip`: airbench's flipping. A random half of the images (chosen once, by
    seed) is mirrored in even epochs and the other half in odd ones, so every image is seen
    both ways in any two consecutive epochs, which random flips per step do not guarantee.
    `batching.drop_last_batch`: each epoch's last, partial batch is left out (airbench's loader), so that
    no step runs on a few images with noisy BatchNorm statistics.
    """
    images, labels = tf.constant(x), tf.constant(y)
    first_way = tf.random.stateless_uniform([len(x)], seed=[seed, -1]) < 0.5  # mirrored in even epochs

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(x)), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return (
            tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size, drop_remainder=batching.drop_last_batch)
            .map(lambda index: (index, epoch))
        )

    def gather(index, epoch):
        batch = tf.gather(images, index)
        if batching.alternating_flip:
            mirror = tf.not_equal(tf.gather(first_way, index), tf.equal(epoch % 2, 1))
            batch = tf.where(mirror[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
        return batch, tf.gather(labels, index)

    # Two batches ahead and no autotuning: tf.data's autotuning thread sleeps up to a minute between its
    # rounds, and destroying the iterator at fit's end waited for it (0-60 s after the last epoch, measured).
    options = tf.data.Options()
    options.autotune.enabled = False
    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch_batches).map(gather).prefetch(2)
    return batches.with_options(options)
