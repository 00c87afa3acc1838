"""How close int8 TFLite comes to its Keras model, and what keeping early layers float buys.

Converts the model to full int8 (uint8 in/out) and to ``int8_mixed`` with growing sets of
Keras layers kept float32 (the first is config.toml's ``export.int8_float_layers``), all
calibrated on the same TRAIN crops. Each runs in LiteRT on every TEST image: top-1
agreement with Keras (overall and by the Keras model's top probability), TEST accuracy,
size, and median batch-1 latency at 1 thread, the variants interleaved in one loop so that
their times are comparable on a noisy machine.

Usage: python benchmarks/int8_agreement.py [--model models/hv_lite0.keras] [--out out/int8_agreement]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tflite_latency import latency_in_turns  # benchmarks/ is on sys.path when run as a script

from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.cli import BUNDLED_KERAS
from hv.config import load_config
from mobile.convert import convert_keras
from mobile.export import sample_split
from training.data import discover
from training.evaluate import crop_fields

REPO = Path(__file__).resolve().parent.parent

# Lite0 layer groups, in network order: each set keeps everything before it float too.
_FLOAT_BLOCKS = {
    "+ blocks 0-2": ("block0_project_conv", *(f"block{b}_{op}" for b in (1, 2)
                                              for op in ("expand_conv", "dwconv", "project_conv"))),
    "+ blocks 3-7": tuple(f"block{b}_{op}" for b in range(3, 8) for op in ("expand_conv", "dwconv", "project_conv")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(BUNDLED_KERAS), help="a .keras model")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--out", default=str(REPO / "out" / "int8_agreement"))
    args = parser.parse_args()
    config = load_config(args.config)
    out = Path(args.out)
    train, _ = discover(config.data.train_dir)
    test, _ = discover(config.data.test_dir)
    labels = np.array(test.labels)
    crops, _ = crop_fields(list(test.paths), config)
    calibration, _ = crop_fields(list(sample_split(train, config.export.calibration_images, config.train.seed).paths),
                                 config)
    reference = KerasClassifier(args.model).predict(crops)
    confidence = reference.max(axis=1)

    float_sets = {"none (full int8, uint8 in/out)": None}
    layers = config.export.int8_float_layers
    float_sets[f"{', '.join(layers)} (config)"] = layers
    for name, extra in _FLOAT_BLOCKS.items():
        layers = (*layers, *extra)
        float_sets[name] = layers

    paths, rows = {}, []
    for i, (name, layers) in enumerate(float_sets.items()):
        variant = "int8" if layers is None else "int8_mixed"
        path = convert_keras(Path(args.model), out / str(i), (variant,), calibration, layers or ())[variant]
        probs = LiteRTClassifier(path, num_threads=2).predict(crops)
        agree = probs.argmax(1) == reference.argmax(1)
        paths[name] = path
        rows.append({
            "float_layers": name,
            "agreement": round(float(agree.mean()), 4),
            "agreement_where_keras_top_prob_over_0.6": round(float(agree[confidence > 0.6].mean()), 4),
            "images_keras_top_prob_at_most_0.6": int((confidence <= 0.6).sum()),
            "accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
            "keras_accuracy": round(float((reference.argmax(1) == labels).mean()), 4),
            "size_mb": round(path.stat().st_size / 1e6, 2),
        })
    times = latency_in_turns(list(paths.values()), list(crops[:: max(1, len(crops) // 40)]), threads=1)
    for row in rows:
        row["latency_ms_1_thread"] = times[str(paths[row["float_layers"]])]
    result = {"model": args.model, "test_images": len(labels), "calibration_images": len(calibration), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_agreement.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
