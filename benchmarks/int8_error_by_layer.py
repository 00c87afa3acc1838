"""Where an int8 TFLite model departs from its Keras model, layer by layer.

Runs the TFLite model in LiteRT with every intermediate tensor kept, dequantises each op's
output that carries a Keras layer name, and compares it with that Keras layer's output on
the same crops (the int8 calibration crops from TRAIN): signal-to-quantisation-noise ratio
(SQNR, dB) and the share of the error that is a per-channel mean shift (the part a bias
correction could remove). Errors accumulate: each row includes everything upstream.

Usage: python benchmarks/int8_error_by_layer.py [--tflite hv/bundled/hv_lite0_int8/model.tflite]
       [--model models/hv_lite0.keras] [--images 40] [--out out/int8_error_by_layer]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import keras
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hv.bundled import CHECKOUT_KERAS_MODEL, DEFAULT_MODEL
from hv.config import load_config
from hv.model import BACKBONE_LAYER
from hv.preprocess import to_model_batch
from mobile.export import calibration_crops
from training.data import discover

REPO = Path(__file__).resolve().parent.parent


def named_outputs(interpreter: Interpreter, layer_names: set[str]) -> list[tuple[str, int, tuple[float, int]]]:
    """(Keras layer, tensor index, (scale, zero point)) of each op output named after a backbone layer.

    A fused op's output is named after its last layer first (``.../block1_expand_relu6_1/Relu6;...``);
    a layer that became several ops (the input rescale: MUL, then ADD) is compared at its last.
    """
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    found = {}
    for op in interpreter._get_ops_details():  # noqa: SLF001 (no public op list)
        tensor = tensors[op["outputs"][0]]
        match = re.match(rf"[^/]+/{BACKBONE_LAYER}(?:_\d+)?/([^/;]+?)(?:_\d+)?/", tensor["name"])
        if match and match.group(1) in layer_names:
            found[match.group(1)] = (match.group(1), tensor["index"], tensor["quantization"])
    return list(found.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", default=str(DEFAULT_MODEL))
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL), help="the .keras model it was converted from")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--images", type=int, default=40, help="calibration crops to compare on")
    parser.add_argument("--out", default=str(REPO / "out" / "int8_error_by_layer"))
    args = parser.parse_args()
    config = load_config(args.config)
    train, _ = discover(config.data.train_dir)
    crops = calibration_crops(train, config, args.images)

    interpreter = Interpreter(model_path=args.tflite, experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    backbone = keras.saving.load_model(args.model, compile=False).get_layer(BACKBONE_LAYER)
    outputs = named_outputs(interpreter, {layer.name for layer in backbone.layers})
    probe = keras.Model(backbone.input, [backbone.get_layer(name).output for name, _, _ in outputs])
    reference = [np.asarray(r) for r in probe.predict_on_batch(to_model_batch(crops))]

    source = interpreter.get_input_details()[0]
    errors = [[] for _ in outputs]
    for i, crop in enumerate(crops):
        interpreter.set_tensor(source["index"], crop[None].astype(source["dtype"]))
        interpreter.invoke()
        for (_, index, (scale, zero_point)), ref, error in zip(outputs, reference, errors):
            value = interpreter.get_tensor(index).astype(np.float32)
            if scale:
                value = (value - zero_point) * scale
            error.append(value[0] - ref[i])

    rows = []
    for (name, _, (scale, _)), ref, error in zip(outputs, reference, errors):
        error = np.stack(error)
        mse = float((error**2).mean())
        shift = error.mean(axis=tuple(range(error.ndim - 1)))  # per channel
        rows.append({
            "layer": name,
            "int8_scale": round(float(scale), 4) if scale else None,
            "sqnr_db": round(10 * np.log10(float((ref**2).mean()) / mse), 1) if mse else None,
            "mean_shift_share_of_error": round(float((shift**2).mean()) / mse, 3) if mse else None,
        })
    result = {"tflite": args.tflite, "model": args.model, "images": len(crops), "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_error_by_layer.json").write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(f"{row['layer']:24s} scale {row['int8_scale']!s:>7s}  SQNR {row['sqnr_db']!s:>6s} dB  "
              f"mean-shift share {row['mean_shift_share_of_error']}")


if __name__ == "__main__":
    main()
