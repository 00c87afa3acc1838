"""Bias correction for int8 weight rounding (Nagel et al., "Data-Free Quantization", 2019).

TFLite rounds each convolution's weights, with its BatchNorm folded in, to int8 per output
channel. The rounding error is not zero on average: for an input with mean ``E[x]`` it
shifts each output channel by ``(W_int8 - W) · E[x]``, and these shifts add up through the
network. Measured on the bundled model, weight rounding alone flips more top-1 answers than
activation rounding does. This module computes each layer's expected shift from the
calibration crops (``E[x]`` of every convolution's input in the float model) and subtracts
it from the layer's bias, the BatchNorm beta that TFLite folds into the int8 bias, in a
copy of the model used only for conversion; the float model stays the reference.

The weight rounding simulated here is TFLite's: symmetric int8 in [-127, 127], one scale
per output channel (max |w| / 127), on BatchNorm-folded weights.
"""

from __future__ import annotations

import logging

import keras
import numpy as np

from hv.model import BACKBONE_LAYER, member_models
from hv.preprocess import to_model_batch

log = logging.getLogger(__name__)

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


def _folded_scale(conv: keras.layers.Layer, batch_norm: keras.layers.BatchNormalization | None) -> np.ndarray:
    """The per-output-channel factor TFLite multiplies into the kernel (1 without BatchNorm)."""
    channels = conv.get_weights()[0].shape[-2 if isinstance(conv, keras.layers.DepthwiseConv2D) else -1]
    if batch_norm is None:
        return np.ones(channels, np.float32)
    gamma, _, _, variance = batch_norm.get_weights()
    return gamma / np.sqrt(variance + batch_norm.epsilon)


def _per_channel(factor: np.ndarray, depthwise: bool) -> np.ndarray:
    """``factor`` shaped to multiply a kernel's output channels (axis 2 of a depthwise kernel)."""
    return factor[None, None, :, None] if depthwise else factor


def _rounded(folded: np.ndarray, depthwise: bool) -> np.ndarray:
    """TFLite's int8 weights, as floats: symmetric, one scale (max |w| / 127) per output channel."""
    reduce_axes = (0, 1, 3) if depthwise else (0, 1, 2)
    scale = np.abs(folded).max(axis=reduce_axes, keepdims=True) / 127
    return np.round(folded / np.where(scale == 0, 1, scale)) * scale


def rounding_shift(conv: keras.layers.Layer, factor: np.ndarray, input_mean: np.ndarray) -> np.ndarray:
    """Expected per-output-channel change of ``conv`` (BatchNorm folded) when its weights are int8.

    Args:
        conv: a Conv2D or DepthwiseConv2D (depth multiplier 1).
        factor: the per-output-channel factor folded into the kernel.
        input_mean: (C_in,) mean of the layer's input over images and positions.
    """
    kernel = conv.get_weights()[0]
    depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
    folded = kernel * _per_channel(factor, depthwise)
    error = _rounded(folded, depthwise) - folded
    if depthwise:  # (kh, kw, C, 1): each channel sees only its own input channel
        return (error[..., 0] * input_mean[None, None, :]).sum(axis=(0, 1))
    return np.einsum("hwio,i->o", error, input_mean)


def _conv_batch_norm_pairs(graph: keras.Model, keep_float: set[str]) -> list[tuple]:
    """Each quantised convolution with the BatchNorm that directly follows it (or None)."""
    produced_by = {id(layer.output): layer for layer in graph.layers if isinstance(layer, _CONVOLUTIONS)}
    following = {}
    for layer in graph.layers:
        if isinstance(layer, keras.layers.BatchNormalization) and id(layer.input) in produced_by:
            following[produced_by[id(layer.input)].name] = layer
    pairs = []
    for layer in graph.layers:
        if not isinstance(layer, _CONVOLUTIONS) or layer.name in keep_float:
            continue
        batch_norm = following.get(layer.name)
        if batch_norm is None and not layer.use_bias:
            continue  # nowhere to put a correction
        pairs.append((layer, batch_norm))
    return pairs


def correct_rounding_bias(model: keras.Model, calibration_crops: np.ndarray,
                          keep_float: tuple[str, ...] = (), batch_size: int = 20) -> int:
    """Subtract each convolution's expected int8 rounding shift from its bias, in place.

    Args:
        model: an ``hv`` model (its backbone sub-model takes the model's input), or an average of
            such runs (each member's backbone is corrected); modified.
        calibration_crops: (n, S, S, 3) uint8 crops, the int8 calibration set.
        keep_float: layers the TFLite model keeps in float32 (not rounded, not corrected).
        batch_size: crops per forward pass.

    Returns:
        How many layers were corrected.
    """
    return sum(_correct_backbone(member.get_layer(BACKBONE_LAYER), calibration_crops, keep_float, batch_size)
               for member in member_models(model))  # each run of an average of runs has its own backbone


def _correct_backbone(graph: keras.Model, calibration_crops: np.ndarray, keep_float: tuple[str, ...],
                      batch_size: int) -> int:
    pairs = _conv_batch_norm_pairs(graph, set(keep_float))
    if not pairs:
        return 0
    probe = keras.Model(graph.input, [conv.input for conv, _ in pairs])
    sums = [np.zeros(conv.input.shape[-1], np.float64) for conv, _ in pairs]
    for start in range(0, len(calibration_crops), batch_size):
        outputs = probe.predict_on_batch(to_model_batch(calibration_crops[start : start + batch_size]))
        for total, output in zip(sums, outputs):
            total += np.asarray(output, np.float64).mean(axis=(1, 2)).sum(axis=0)
    for (conv, batch_norm), total in zip(pairs, sums):
        factor = _folded_scale(conv, batch_norm)
        shift = rounding_shift(conv, factor, (total / len(calibration_crops)).astype(np.float32))
        if batch_norm is not None:
            gamma, beta, mean, variance = batch_norm.get_weights()
            batch_norm.set_weights([gamma, beta - shift, mean, variance])
        else:
            kernel, bias = conv.get_weights()
            conv.set_weights([kernel, bias - shift])
    log.info("int8 bias correction: %d layers, from %d calibration crops", len(pairs), len(calibration_crops))
    return len(pairs)


def round_weights(model: keras.Model, keep_float: tuple[str, ...] = ()) -> int:
    """Replace each convolution's kernel by its int8-rounded value, in place (a diagnostic:
    the float model with only weight rounding, no activation rounding). Returns the count."""
    pairs = [pair for member in member_models(model)
             for pair in _conv_batch_norm_pairs(member.get_layer(BACKBONE_LAYER), set(keep_float))]
    for conv, batch_norm in pairs:
        factor = _folded_scale(conv, batch_norm)
        weights = conv.get_weights()
        depthwise = isinstance(conv, keras.layers.DepthwiseConv2D)
        per_channel = _per_channel(factor, depthwise)
        weights[0] = _rounded(weights[0] * per_channel, depthwise) / per_channel
        conv.set_weights(weights)
    return len(pairs)
