"""Convert a trained ``.keras`` model to TFLite: float32, float16, dynamic-range and full int8.

The path is Keras ``model.export()`` -> SavedModel -> ``TFLiteConverter.from_saved_model``;
converting a wrapped concrete function was seen to give a tiny file with NaN outputs. The
model takes raw RGB pixels in [0, 255] (its normalisation is a layer inside it), so the
int8 variant's uint8 input is exactly the camera's pixels, and the representative set is
crops made by the stream's own crop function.

``int8_mixed`` is int8 except for a few named Keras layers that stay float32 (TFLite's
selective quantisation, through ``QuantizationDebugger``); its input and output are float32.
"""

from __future__ import annotations

import itertools
import logging
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)

VARIANTS = ("float32", "float16", "dynamic", "int8", "int8_mixed")


class ConversionError(RuntimeError):
    """The model could not be converted; the message names the model and the variant."""


def _converter(saved_model_dir: Path, variant: str, representative: Callable[[], Iterator] | None):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant in ("int8", "int8_mixed"):
        if representative is None:
            raise ConversionError("int8 needs a representative data set")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if variant == "int8":
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
    elif variant != "float32":
        raise ConversionError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return converter


def _op_output_names(flat_model: bytes) -> list[str]:
    """The output tensor name of every op, in execution order (names carry the Keras layer names)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flat_model)
    names = {t["index"]: t["name"] for t in interpreter.get_tensor_details()}
    return [names[op["outputs"][0]] for op in interpreter._get_ops_details()]  # noqa: SLF001 (no public op list)


def float_layer_nodes(op_outputs: list[str], float_layers: tuple[str, ...]) -> list[str]:
    """Op outputs that belong to the named Keras layers (a fused op names every layer it holds).

    Raises:
        ConversionError: a named layer is not in the model.
    """
    def belongs(name: str, layer: str) -> bool:
        return re.search(rf"(^|/){re.escape(layer)}(_\d+)?/", name) is not None

    missing = [layer for layer in float_layers if not any(belongs(n, layer) for n in op_outputs)]
    if missing:
        raise ConversionError(f"export.int8_float_layers: no layer named {', '.join(map(repr, missing))} in the "
                              "model; use the Keras layer names of its backbone (model.summary(expand_nested=True))")
    return [n for n in op_outputs if any(belongs(n, layer) for layer in float_layers)]


def _int8_mixed(saved_model_dir: Path, representative: Callable[[], Iterator], float_layers: tuple[str, ...]) -> bytes:
    import tensorflow as tf

    if not float_layers:
        raise ConversionError("int8_mixed needs export.int8_float_layers (layers to keep in float32)")
    nodes = float_layer_nodes(_op_output_names(_converter(saved_model_dir, "int8_mixed", representative).convert()),
                              float_layers)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=_converter(saved_model_dir, "int8_mixed", representative),
        debug_dataset=lambda: itertools.islice(representative(), 1),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes),
    )
    return debugger.get_nondebug_quantized_model()


def representative_from_crops(crops_rgb: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter-ready generator over (n, S, S, 3) uint8 crops, one image per step, as float32."""
    if len(crops_rgb) == 0:
        raise ConversionError("the representative set is empty: int8 calibration needs images")

    def generate():
        for crop in crops_rgb:
            yield [crop[None].astype(np.float32)]

    return generate


def convert_keras(model_path: Path, out_dir: Path, variants: tuple[str, ...] = VARIANTS,
                  representative_crops: np.ndarray | None = None, float_layers: tuple[str, ...] = (),
                  prepare_int8: Callable[[keras.Model, tuple[str, ...]], None] | None = None) -> dict[str, Path]:
    """Write ``<variant>.tflite`` for each variant into ``out_dir``.

    ``float_layers``: the Keras layers ``int8_mixed`` keeps in float32. ``prepare_int8``: the
    int8 variants are converted from a fresh copy of the model that this function first
    adjusts in place, given the layers that variant keeps in float (bias correction,
    quantisation-aware fine-tuning; see ``mobile.export.int8_preparation``). The float
    variants, and the model file, are never changed.

    Raises:
        ConversionError: unknown variant, empty representative set, or a converter failure.
    """
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    needs_calibration = {"int8", "int8_mixed"} & set(variants)
    representative = representative_from_crops(representative_crops) if needs_calibration else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved_models: dict[tuple[str, ...] | None, Path] = {}

        def saved_model_for(variant: str) -> Path:
            # One SavedModel per set of layers left float: the preparation skips those layers.
            key = None
            if prepare_int8 is not None and variant in ("int8", "int8_mixed"):
                key = tuple(float_layers) if variant == "int8_mixed" else ()
            if key not in saved_models:
                source = model
                if key is not None:
                    source = keras.saving.load_model(model_path, compile=False)
                    prepare_int8(source, key)
                saved_models[key] = Path(tmp) / f"saved_model_{len(saved_models)}"
                source.export(str(saved_models[key]), format="tf_saved_model", verbose=False)
            return saved_models[key]

        for variant in variants:
            log.info("converting %s to %s TFLite", model_path.name, variant)
            try:
                if variant == "int8_mixed":
                    flat = _int8_mixed(saved_model_for(variant), representative, float_layers)
                else:
                    flat = _converter(saved_model_for(variant), variant, representative).convert()
            except ConversionError:
                raise
            except Exception as exc:  # the converter raises many internal types
                raise ConversionError(f"{model_path}: {variant} conversion failed: {exc}") from exc
            path = out_dir / f"{variant}.tflite"
            path.write_bytes(flat)
            written[variant] = path
    return written
