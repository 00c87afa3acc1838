"""tf.data input pipelines: parallel decode and crop, cache, shuffle, augment, prefetch."""

from __future__ import annotations

import threading

import numpy as np
import tensorflow as tf

from hv.config import Config
from hv.labels import NUM_OUTPUTS
from hv.preprocess import field_to_model_input, read_image_rgb
from training.data import Split

AUTOTUNE = tf.data.AUTOTUNE


class FieldLoader:
    """Turns a file path into the model's input crop; remembers fields with no located cell.

    Decoding and locating run in OpenCV inside ``tf.numpy_function``, so tf.data runs them
    in parallel threads, and the stream's crop code is the one used here.
    """

    def __init__(self, config: Config):
        self._config = config
        self._lock = threading.Lock()
        self.not_located: list[str] = []

    def __call__(self, path: bytes) -> np.ndarray:
        path_str = path.decode()
        crop, located = field_to_model_input(read_image_rgb(path_str), self._config)
        if not located:
            with self._lock:
                self.not_located.append(path_str)
        return crop


def load_crops(split: Split, config: Config, loader: FieldLoader, *, cache: bool = True) -> tf.data.Dataset:
    """Unbatched (uint8 (S, S, 3) crop, one-hot label) pairs, decoded and cropped in parallel.

    With ``cache`` the crops are kept in memory after the first pass, so every later epoch
    or view of the same images reuses them.
    """
    size = config.model.image_size
    labels = tf.one_hot(np.array(split.labels, np.int32), NUM_OUTPUTS)
    ds = tf.data.Dataset.from_tensor_slices((list(split.paths), labels))

    def load(path, label):
        crop = tf.numpy_function(loader, [path], tf.uint8, stateful=False)
        crop.set_shape((size, size, 3))
        return crop, label

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.cache() if cache else ds


def group_weights(groups: list[str]) -> dict[str, float]:
    """Sampling weight of each ``"source|class"`` group: every class present gets the same share,
    split equally between the sources that have it (a lab's size does not set its say)."""
    classes: dict[str, set[str]] = {}
    for group in set(groups):
        source, _, label = group.rpartition("|")
        classes.setdefault(label, set()).add(source)
    return {f"{source}|{label}": 1 / len(classes) / len(sources)
            for label, sources in classes.items() for source in sources}


def balanced_batches(pairs: tf.data.Dataset, groups: list[str], batch_size: int, *, seed: int,
                     augmenter=None) -> tf.data.Dataset:
    """Training batches that draw each (source, class) group at its ``group_weights`` share.

    Args:
        pairs: unbatched (x, one-hot label) elements, in the order of ``groups``.
        groups: each element's ``"source|class"`` group.
        batch_size: elements per batch; an epoch has ``len(groups) // batch_size`` batches.
        seed: the draw's and the shuffles' seed.
        augmenter: a Keras layer applied to every batch (training only).

    Returns:
        Batches of (float32 x, one-hot labels), prefetched.
    """
    names = sorted(set(groups))
    weights = group_weights(groups)
    index = tf.data.Dataset.from_tensor_slices(np.array([names.index(g) for g in groups], np.int32))
    tagged = tf.data.Dataset.zip(pairs, index)
    members = []
    for i, name in enumerate(names):
        member = tagged.filter(lambda pair, g, i=i: tf.equal(g, i)).map(lambda pair, g: pair)
        members.append(member.shuffle(groups.count(name), seed=seed + i, reshuffle_each_iteration=True).repeat())
    mixed = tf.data.Dataset.sample_from_datasets(members, [weights[n] for n in names], seed=seed,
                                                 rerandomize_each_iteration=True)
    ds = mixed.batch(batch_size).take(max(1, len(groups) // batch_size))
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def batch_crops(crops: tf.data.Dataset, *, batch_size: int, augmenter=None) -> tf.data.Dataset:
    """Batches of (float32 (b, S, S, 3) raw RGB in [0, 255], one-hot (b, 5) labels).

    Args:
        crops: from ``load_crops``.
        batch_size: images per batch.
        augmenter: a Keras layer applied to training batches only.
    """
    ds = crops.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augmenter is not None:
        ds = ds.map(lambda x, y: (augmenter(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)
