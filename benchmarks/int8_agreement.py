"""How close int8 TFLite comes to its Keras model: float layers and bias correction.

Converts the model to full int8 (uint8 in/out) and to ``int8_mixed`` with growing sets of
Keras layers kept float32 (the first is config.toml's ``export.int8_float_layers``), with
bias correction for weight rounding (``mobile.bias_correction``) and, for full int8 and the
config's set, also without it, all calibrated on the same TRAIN crops. Each runs in LiteRT on every TEST image: top-1
agreement with Keras (overall and by the Keras model's top probability), TEST accuracy,
size, and median batch-1 latency at 1 thread, the variants interleaved in one loop so that
their times are comparable on a noisy machine. Two diagnostic rows run the Keras model
with only its weights rounded as TFLite rounds them (no activation rounding), without and
with the correction: how much of the disagreement weight rounding alone explains.
None of these rows is fine-tuned for int8 (``export.qat_steps``): this is post-training
quantisation alone; ``hv export``'s verification table measures what it ships.

Usage: python benchmarks/int8_agreement.py [--model models/hv_lite0.keras] [--out out/int8_agreement]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
import numpy as np
from int8_inputs import load_int8_inputs  # benchmarks/ is on sys.path when run as a script
from tflite_latency import latency_in_turns

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.config import load_config
from mobile.bias_correction import correct_rounding_bias, round_weights
from mobile.convert import convert_keras

REPO = Path(__file__).resolve().parent.parent

# Lite0 layer groups, in network order: each set keeps everything before it float too.
_FLOAT_BLOCKS = {
    "+ blocks 0-2": ("block0_project_conv", *(f"block{b}_{op}" for b in (1, 2)
                                              for op in ("expand_conv", "dwconv", "project_conv"))),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL), help="a .keras model")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--out", default=str(REPO / "out" / "int8_agreement"))
    args = parser.parse_args()
    config = load_config(args.config)
    out = Path(args.out)
    inputs = load_int8_inputs(config)
    crops, labels, calibration = inputs.test_crops, inputs.test_labels, inputs.calibration
    reference = KerasClassifier(args.model).predict(crops)
    confidence = reference.max(axis=1)

    def row(name: str, probs: np.ndarray, size_mb: float | None) -> dict:
        agree = probs.argmax(1) == reference.argmax(1)
        return {
            "variant": name,
            "agreement": round(float(agree.mean()), 4),
            "agreement_where_keras_top_prob_over_0.6": round(float(agree[confidence > 0.6].mean()), 4),
            "images_keras_top_prob_at_most_0.6": int((confidence <= 0.6).sum()),
            "accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
            "keras_accuracy": round(float((reference.argmax(1) == labels).mean()), 4),
            "size_mb": size_mb,
        }

    layers = config.export.int8_float_layers
    float_sets = {"full int8, uint8 in/out": None, f"int8_mixed: {', '.join(layers)} float (config)": layers}
    for name, extra in _FLOAT_BLOCKS.items():
        layers = (*layers, *extra)
        float_sets[f"int8_mixed: {name}"] = layers

    def bias_correction(model: keras.Model, keep_float: tuple[str, ...]) -> None:
        correct_rounding_bias(model, calibration, keep_float=keep_float)

    paths, rows = {}, []
    for corrected in (False, True):
        for i, (name, layers) in enumerate(float_sets.items()):
            if not corrected and name.startswith("int8_mixed: +"):
                continue  # more float layers without the correction: measured before, see BENCHMARKS.md
            variant = "int8" if layers is None else "int8_mixed"
            label = f"{name}, {'with' if corrected else 'no'} bias correction"
            path = convert_keras(Path(args.model), out / f"{i}{'_bc' if corrected else ''}", (variant,), calibration,
                                 layers or (), bias_correction if corrected else None)[variant]
            paths[label] = path
            rows.append(row(label, LiteRTClassifier(path, num_threads=2).predict(crops),
                            round(path.stat().st_size / 1e6, 2)))
    for corrected in (False, True):
        model = keras.saving.load_model(args.model, compile=False)
        if corrected:
            correct_rounding_bias(model, calibration, config.export.int8_float_layers)
        round_weights(model, config.export.int8_float_layers)
        simulated = out / f"keras_rounded_weights{'_bc' if corrected else ''}.keras"
        model.save(simulated)
        rows.append(row(f"Keras, weights rounded as int8 (config float layers kept), "
                        f"{'with' if corrected else 'no'} bias correction",
                        KerasClassifier(simulated).predict(crops), None))
    times = latency_in_turns(list(paths.values()), list(crops[:: max(1, len(crops) // 40)]), threads=1)
    for r in rows:
        if r["variant"] in paths:
            r["latency_ms_1_thread"] = times[str(paths[r["variant"]])]
    result = {"model": args.model, "test_images": len(labels), "calibration_images": len(calibration), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
