"""Convert a trained ``.keras`` model to TFLite: float32, float16, dynamic-range and full int8.

The path is Keras ``model.export()`` -> SavedModel -> ``TFLiteConverter.from_saved_model``;
converting a wrapped concrete function was seen to give a tiny file with NaN outputs. The
model takes raw RGB pixels in [0, 255] (its normalisation is a layer inside it), so the
int8 variant's uint8 input is exactly the camera's pixels, and the representative set is
crops made by the stream's own crop function.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VARIANTS = ("float32", "float16", "dynamic", "int8")


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
    elif variant == "int8":
        if representative is None:
            raise ConversionError("int8 needs a representative data set")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif variant != "float32":
        raise ConversionError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return converter


def representative_from_crops(crops_rgb: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """A converter-ready generator over (n, S, S, 3) uint8 crops, one image per step, as float32."""
    if len(crops_rgb) == 0:
        raise ConversionError("the representative set is empty: int8 calibration needs images")

    def generate():
        for crop in crops_rgb:
            yield [crop[None].astype(np.float32)]

    return generate


def convert_keras(model_path: Path, out_dir: Path, variants: tuple[str, ...] = VARIANTS,
                  representative_crops: np.ndarray | None = None) -> dict[str, Path]:
    """Write ``<variant>.tflite`` for each variant into ``out_dir``.

    Raises:
        ConversionError: unknown variant, empty representative set, or a converter failure.
    """
    import keras

    model = keras.saving.load_model(model_path, compile=False)
    representative = representative_from_crops(representative_crops) if "int8" in variants else None
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp) / "saved_model"
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        for variant in variants:
            log.info("converting %s to %s TFLite", model_path.name, variant)
            try:
                flat = _converter(saved_model, variant, representative).convert()
            except ConversionError:
                raise
            except Exception as exc:  # the converter raises many internal types
                raise ConversionError(f"{model_path}: {variant} conversion failed: {exc}") from exc
            path = out_dir / f"{variant}.tflite"
            path.write_bytes(flat)
            written[variant] = path
    return written
