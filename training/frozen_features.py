"""Train on cached activations of the frozen part of the backbone.

On a CPU most of a fine-tuning step is spent in the early backbone layers, which phase 1
and phase 2 never change. Splitting the model where the frozen part ends, running that
part once over a few augmented views of every image and training the rest on the stored
activations gives the same model and the same two phases several times faster. The
trainer shares its layers with the full model, so training it trains the full model.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from hv.model import BACKBONE_LAYER

log = logging.getLogger(__name__)

HEAD_LAYERS = ("avg_pool", "top_dropout", "dense", "pred")


def _producers(layer: keras.Layer) -> list[str]:
    return [t._keras_history[0].name for node in layer._inbound_nodes for t in node.input_tensors]


def frozen_boundary(backbone: keras.Model, first_open: int) -> str:
    """Name of the last layer before ``first_open`` whose output alone feeds everything after it.

    Residual blocks read tensors from before them, so the model can only be cut between
    blocks; this finds the latest such cut that leaves every trainable layer above it.
    """
    position = {layer.name: i for i, layer in enumerate(backbone.layers)}
    for i in range(min(first_open, len(backbone.layers)) - 1, 0, -1):
        later = backbone.layers[i + 1 :]
        # A layer also has nodes from graphs it was called in later (an earlier split's
        # tail); only its wiring inside this backbone decides where the backbone can be cut.
        if all(position[p] >= i for layer in later for p in _producers(layer) if p in position):
            return backbone.layers[i].name
    raise ValueError("no layer of the backbone separates its frozen and trainable parts")


def split_model(model: keras.Model, unfreeze_layers: int) -> tuple[keras.Model, keras.Model]:
    """Split into (frozen prefix, trainer) at the block boundary below the unfrozen layers.

    Args:
        model: a model from ``hv.model.build_model``.
        unfreeze_layers: how many backbone layers phase 2 will unfreeze.

    Returns:
        ``prefix``: raw image -> activations at the cut. ``trainer``: activations -> class
        probabilities, built from the model's own layers (weights are shared).
    """
    backbone = model.get_layer(BACKBONE_LAYER)
    first_open = len(backbone.layers) - max(unfreeze_layers, 1)
    cut = backbone.get_layer(frozen_boundary(backbone, first_open))
    prefix = keras.Model(backbone.input, cut.output, name="frozen_prefix")
    tail = keras.Model(cut.output, backbone.output, name="backbone_tail")
    features = keras.Input(shape=cut.output.shape[1:], name="features")
    x = tail(features, training=False)  # BatchNorm keeps ImageNet statistics, as in the full model
    for name in HEAD_LAYERS:
        x = model.get_layer(name)(x)
    log.info("cached cut at %s %s; %d of %d backbone layers run per step",
             cut.name, tuple(cut.output.shape[1:]), len(tail.layers), len(backbone.layers))
    return prefix, keras.Model(features, x, name="trainer")


def compute_features(prefix: keras.Model, datasets: list[tf.data.Dataset]) -> tuple[np.ndarray, np.ndarray]:
    """Run the prefix over each dataset (one per view); stack activations (float16) and labels.

    A plain compiled call, not ``predict``: under a distribution strategy ``predict`` would
    run each batch once per replica, and every process needs all the activations anyway.
    """
    forward = tf.function(lambda x: prefix(x, training=False), reduce_retracing=True)
    feats, labels = [], []
    for view, ds in enumerate(datasets):
        log.info("computing frozen activations, view %d of %d", view + 1, len(datasets))
        progress = keras.utils.Progbar(int(ds.cardinality()) if ds.cardinality() > 0 else None)
        for x, y in ds:
            feats.append(forward(x).numpy().astype(np.float16))
            labels.append(y.numpy())
            progress.add(1)
    return np.concatenate(feats), np.concatenate(labels)


def feature_dataset(features: np.ndarray, labels: np.ndarray) -> tf.data.Dataset:
    """Unbatched (float16 activations, one-hot label) pairs in the arrays' order.

    Training batches come from ``training.pipeline.balanced_batches``; validation batches it in order.
    """
    return tf.data.Dataset.from_tensor_slices((features, labels))
