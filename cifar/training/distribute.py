"""`train.strategy`: the tf.distribute strategy training runs under, and a fit loop for many workers.

auto: one device, or MirroredStrategy over every GPU when there are several;
one_device: TensorFlow's default strategy; mirrored: every local GPU, else every
logical CPU device; multi_worker: MultiWorkerMirroredStrategy, configured by the
standard TF_CONFIG environment variable. The batch size is always the global batch.
"""

import keras
import tensorflow as tf

from cifar.core.errors import PipelineError

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name):
    if name == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except (ValueError, RuntimeError) as err:
            raise PipelineError(f"train.strategy multi_worker: cannot join the cluster in TF_CONFIG: {err}") from err
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored":
        devices = gpus or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "auto" and len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()  # the default: whatever one device TensorFlow places ops on


def describe(strategy):
    """What `train.strategy` resolved to: 'one device', or e.g. 'MirroredStrategy, 2 replica(s)'."""
    if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
        return "one device"
    return f"{type(strategy).__name__}, {strategy.num_replicas_in_sync} replica(s)"


def build_under(strategy, build):
    """`build()` called under the strategy's scope, starting from the weights it gives on one device.

    Seeded initialisers draw differently under a distribution strategy; starting from the
    one-device weights, the same params give the same model on any number of devices.
    """
    model = build()
    if not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy():
        return model  # the default strategy: nothing to redo
    weights = model.get_weights()
    with strategy.scope():
        model = build()
        model.set_weights(weights)
    return model


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True unless this process is a non-chief worker of a cluster: only the chief writes outputs."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_name(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}-{resolver.task_id}"


def agree_on_epoch(strategy, done):
    """Check that every worker resumes from the same epoch; they train in lockstep, so they must."""
    if not is_multi_worker(strategy):
        return

    @tf.function  # run eagerly, the collective strategy warns of its overhead
    def total():
        per_replica = strategy.run(lambda: tf.constant(done, tf.int64))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    if int(total()) != done * strategy.num_replicas_in_sync:
        raise PipelineError(
            f"workers resume from different epochs (this one from {done}); "
            "remove .train_state on every worker to start over together"
        )


def fit_multi_worker(
    model,
    strategy,
    dataset,
    steps_per_epoch,
    epochs,
    initial_epoch,
    validation_data,
    validation_batch_size,
    callbacks,
    validation_freq=1,
):
    """model.fit for MultiWorkerMirroredStrategy, whose Keras 3 fit fails (keras-team/keras#20585).

    Runs Keras' own train_step and test_step on every replica with the same callbacks
    fit would call. The optimizer all-reduces the gradients; each replica's metrics cover
    its share of the data, so the logs average them over the replicas.
    """
    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model, epochs=epochs, steps=steps_per_epoch)
    batches = iter(strategy.experimental_distribute_dataset(dataset))
    x_val, y_val = validation_data
    validation = strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensor_slices((x_val, y_val)).batch(validation_batch_size)
    )

    def mean_over_replicas(outputs):
        return {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None) for name, value in outputs.items()}

    @tf.function
    def train_step(iterator, trainable):  # `trainable`: Python values, so a layer frozen mid-run retraces it
        return mean_over_replicas(strategy.run(model.train_step, args=(next(iterator),)))

    @tf.function
    def test_step(batch):
        return mean_over_replicas(strategy.run(model.test_step, args=(batch,)))

    model.stop_training = False
    callback_list.on_train_begin()
    logs = {}
    for epoch in range(initial_epoch, epochs):
        model.reset_metrics()
        callback_list.on_epoch_begin(epoch)
        for step in range(steps_per_epoch):
            callback_list.on_train_batch_begin(step)
            logs = train_step(batches, tuple(layer.trainable for layer in model.layers))
            callback_list.on_train_batch_end(step)
        logs = {name: float(value) for name, value in logs.items()}
        if (epoch + 1) % validation_freq == 0:  # as fit's validation_freq
            model.reset_metrics()
            for batch in validation:
                val_logs = test_step(batch)
            logs.update({f"val_{name}": float(value) for name, value in val_logs.items()})
        callback_list.on_epoch_end(epoch, logs)
        print(f"epoch {epoch + 1}/{epochs} " + " ".join(f"{k}: {v:.4f}" for k, v in logs.items()), flush=True)
    model.optimizer.finalize_variable_values(model.trainable_variables)  # as fit does: EMA weights, if any
    callback_list.on_train_end(logs)
