"""Where training runs: one device, every local GPU, or several machines (tf.distribute).

``hv train`` builds and compiles the model inside the chosen strategy's scope, as the
Keras distributed-training guide does; ``train.batch_size`` is the *global* batch, which
Keras splits across the replicas. Mixed precision (float16 compute, float32 weights)
is turned on where the device does it fast (an NVIDIA GPU of compute capability 7.0 or
later), unless the config says otherwise.

Strategies (``train.strategy`` or ``hv train --strategy``):
- ``default``: TensorFlow's default, one device (the first GPU if there is one, else the CPU).
- ``mirrored``: ``MirroredStrategy`` over all local GPUs (or the logical CPU devices a test made).
- ``multi_worker``: ``MultiWorkerMirroredStrategy``; each machine runs the same ``hv train``
  with its own ``TF_CONFIG`` (README, "Training on several machines").
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import keras
import tensorflow as tf

log = logging.getLogger(__name__)

STRATEGIES = ("default", "mirrored", "multi_worker")


class DistributeError(ValueError):
    """A strategy that cannot run here (no TF_CONFIG for multi_worker, an unknown name)."""


@dataclass(frozen=True)
class Placement:
    """The strategy and what it means for this process."""

    strategy: tf.distribute.Strategy
    replicas: int
    is_chief: bool  # writes the run folder; other workers write to a scratch folder they delete
    mixed_precision: bool


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or None
        if devices is None and len(tf.config.list_logical_devices("CPU")) > 1:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]  # a CPU split into logical devices
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise DistributeError("train.strategy = \"multi_worker\" needs TF_CONFIG (the cluster and this "
                                  "machine's task) in the environment; see the README, 'Training on several machines'")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise DistributeError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief, or worker 0 of a cluster without one, writes the results (Keras' multi-worker guide)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or resolver.task_type is None:
        return True
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().as_dict()


def _fast_float16() -> bool:
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if capability >= (7, 0):
            return True
    return False


def place(strategy_name: str, mixed_precision: str = "auto") -> Placement:
    """Choose the strategy and the precision policy (set globally, before any layer is built)."""
    strategy = make_strategy(strategy_name)
    use_float16 = mixed_precision == "on" or (mixed_precision == "auto" and _fast_float16())
    keras.mixed_precision.set_global_policy("mixed_float16" if use_float16 else "float32")
    placement = Placement(strategy, strategy.num_replicas_in_sync, _is_chief(strategy), use_float16)
    log.info("training on %d replica(s) with %s%s", placement.replicas, type(strategy).__name__,
             ", mixed precision (float16)" if use_float16 else "")
    return placement


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit_multi_worker(strategy: tf.distribute.Strategy, trainer: keras.Model, train_ds: tf.data.Dataset, *,
                     epochs: int, initial_epoch: int, learning_rate: float, label_smoothing: float,
                     global_batch: int) -> dict[str, list[float]]:
    """One phase of training across workers, as TensorFlow's custom-loop guide for multi-worker training does.

    Keras 3's ``fit`` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open), so
    this path runs the steps itself: each worker takes its share of every global batch, the
    gradients are summed across workers, and the loss and accuracy of the epoch are reduced
    over all of them. Returns the history in ``fit``'s form (``loss``, ``accuracy`` per epoch).
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    batches = strategy.experimental_distribute_dataset(train_ds.with_options(options))
    with strategy.scope():
        optimizer = keras.optimizers.Adam(learning_rate)
        loss_fn = keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing, reduction=None)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            probs = trainer(x, training=True)
            per_example = loss_fn(y, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, trainer.trainable_variables)
        optimizer.apply_gradients(zip(grads, trainer.trainable_variables))
        correct = tf.cast(tf.equal(tf.argmax(probs, -1), tf.argmax(y, -1)), tf.float32)
        return tf.reduce_sum(per_example), tf.reduce_sum(correct), tf.cast(tf.shape(y)[0], tf.float32)

    @tf.function
    def step(x, y):
        sums = strategy.run(replica_step, args=(x, y))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in sums]

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    for epoch in range(initial_epoch, initial_epoch + epochs):
        loss_sum = correct = seen = 0.0
        for x, y in batches:
            batch_loss, batch_correct, batch_seen = (float(v) for v in step(x, y))
            loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + batch_seen
        history["loss"].append(loss_sum / max(seen, 1.0))
        history["accuracy"].append(correct / max(seen, 1.0))
        log.info("epoch %d: loss %.4f, accuracy %.4f (%d images over all workers)", epoch + 1,
                 history["loss"][-1], history["accuracy"][-1], seen)
    return history
