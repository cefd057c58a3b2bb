"""The training batches: a reproducible shuffle per epoch, gathered from uint8 arrays in memory."""

import tensorflow as tf


def training_batches(x, y, batch_size, seed, first_epoch, epochs):
    """Shuffled batches for epochs first_epoch..epochs-1: uint8 images and one-hot labels.

    Each epoch's order is a stateless shuffle keyed by (seed, epoch), so a run
    resumed at epoch k sees exactly the batches an uninterrupted run would.
    The images stay uint8 in memory; batches are gathered on the fly.
    """
    images, labels = tf.constant(x), tf.constant(y)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(x)), seed=tf.stack([tf.constant(seed, tf.int64), epoch])
        )
        return tf.data.Dataset.from_tensor_slices(order).batch(batch_size)

    return (
        tf.data.Dataset.range(first_epoch, epochs)
        .flat_map(epoch_batches)
        .map(lambda index: (tf.gather(images, index), tf.gather(labels, index)))
        .prefetch(tf.data.AUTOTUNE)
    )
