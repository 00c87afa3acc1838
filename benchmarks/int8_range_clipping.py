"""Does narrowing the int8 ranges of the linear bottleneck help agreement?

The projection convolutions and residual adds of Lite0 carry no ReLU6, so their int8 range
is the calibration min/max: the coarsest rounding in the network (0.13-0.41 per step,
``benchmarks/int8_error_by_layer.py``). This converts the config's
``int8_mixed`` (with bias correction) once with the converter's calibration only, scales
those tensors' recorded min/max by each factor (values outside are clipped), quantises,
and measures top-1 agreement with Keras and accuracy on TEST in LiteRT.

Uses the converter's private calibrate-only path (``_experimental_calibrate_only`` and
``mlir_quantize``); a diagnostic, not part of ``hv export``.

Usage: python benchmarks/int8_range_clipping.py [--model models/hv_lite0.keras] [--factors 1 0.8 0.65 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import keras
import numpy as np
from int8_inputs import load_int8_inputs  # benchmarks/ is on sys.path when run as a script
from tensorflow.lite.python import convert as tflite_convert
from tensorflow.lite.tools import flatbuffer_utils

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.config import load_config
from mobile.bias_correction import correct_rounding_bias
from mobile.convert import _converter, _op_output_names, float_layer_nodes, representative_from_crops

REPO = Path(__file__).resolve().parent.parent


def _is_linear_bottleneck(name: str) -> bool:
    return ("project_bn" in name and "Relu" not in name) or name.endswith("/Add")


def _recorded_relu6_maxima(calibrated: bytes) -> list[float]:
    """The calibration maximum of every fused ReLU6 output (6 where the range is fully used)."""
    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
    maxima = []
    for tensor in flat.subgraphs[0].tensors:
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
        stats = tensor.quantization
        if stats is not None and stats.max is not None and len(stats.max) == 1 and name.split(";")[0].endswith("Relu6"):
            maxima.append(float(stats.max[0]))
    return maxima


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 0.8, 0.65, 0.5])
    parser.add_argument("--out", default=str(REPO / "out" / "int8_range_clipping"))
    args = parser.parse_args()
    config = load_config(args.config)
    float_layers = config.export.int8_float_layers
    inputs = load_int8_inputs(config)
    crops, labels, calibration = inputs.test_crops, inputs.test_labels, inputs.calibration
    reference = KerasClassifier(args.model).predict(crops).argmax(1)
    representative = representative_from_crops(calibration)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = keras.saving.load_model(args.model, compile=False)
        correct_rounding_bias(model, calibration, keep_float=float_layers)
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = _converter(Path(tmp), "int8_mixed", representative)
        converter._experimental_calibrate_only = True  # noqa: SLF001
        calibrated = converter.convert()
        relu6_max = _recorded_relu6_maxima(calibrated)
        print(f"ReLU6 outputs: calibration max from {min(relu6_max):.2f} to {max(relu6_max):.2f}", flush=True)
        nodes = float_layer_nodes(_op_output_names(_converter(Path(tmp), "int8_mixed", representative).convert()),
                                  float_layers)
    for factor in args.factors:
        flat = flatbuffer_utils.read_model_from_bytearray(bytearray(calibrated))
        narrowed = 0
        for tensor in flat.subgraphs[0].tensors:
            name = tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name
            stats = tensor.quantization
            if stats is not None and stats.min is not None and len(stats.min) == 1 and _is_linear_bottleneck(name):
                stats.min = np.asarray(stats.min, np.float32) * factor
                stats.max = np.asarray(stats.max, np.float32) * factor
                narrowed += 1
        path = out / f"int8_mixed_range_x{factor}.tflite"
        path.write_bytes(tflite_convert.mlir_quantize(bytes(flatbuffer_utils.convert_object_to_bytearray(flat)),
                                                      denylisted_nodes=nodes))
        answers = LiteRTClassifier(path, num_threads=2).predict(crops).argmax(1)
        rows.append({"range_factor": factor, "tensors_narrowed": narrowed,
                     "agreement": round(float((answers == reference).mean()), 4),
                     "answers_differing": int((answers != reference).sum()),
                     "accuracy": round(float((answers == labels).mean()), 4)})
        print(rows[-1], flush=True)
    result = {"model": args.model, "relu6_calibration_max": [min(relu6_max), max(relu6_max)], "rows": rows}
    (out / "int8_range_clipping.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
