"""Median batch-1 latency of TFLite models in LiteRT at 1 and 2 threads, measured in turns.

Each model classifies the same crops (bundled sample fields, cropped as the stream crops
them); the models take turns round by round so that machine noise hits them alike.

``--b0-reference DIR`` adds a yardstick for comparing machines: our model built on a
random-weight EfficientNetB0, converted to full int8 (the mobile issue quotes 5.7-6.0 ms at
1 thread for such a model on the machine it was written on).

Usage: python benchmarks/tflite_latency.py MODEL.tflite [MODEL.tflite ...] [--rounds 5] [--b0-reference out/b0_ref]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hv.bundled import SAMPLE_FIELDS
from hv.classifier import LiteRTClassifier
from hv.cli import DEFAULT_CONFIG
from hv.config import load_config
from hv.preprocess import field_to_model_input, read_image_rgb


def latency_in_turns(paths: list[Path], crops: list[np.ndarray], threads: int, rounds: int = 5,
                     per_round: int = 40) -> dict[str, float]:
    """Median batch-1 milliseconds per model; the models take turns round by round."""
    models = {str(path): LiteRTClassifier(path, num_threads=threads) for path in paths}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.predict(crops[0][None])  # warm-up
    for _ in range(rounds):
        for name, model in models.items():
            for i in range(per_round):
                crop = crops[i % len(crops)][None]
                start = time.perf_counter()
                model.predict(crop)
                times[name].append((time.perf_counter() - start) * 1000)
    return {name: round(float(np.median(t)), 2) for name, t in times.items()}


def random_b0_int8(out_dir: Path, crops: list[np.ndarray]) -> Path:
    """Full-int8 TFLite of the hv model on a random-weight EfficientNetB0 (calibrated on ``crops``)."""
    from hv.config import ModelConfig
    from hv.model import build_model
    from mobile.convert import convert_keras

    out_dir.mkdir(parents=True, exist_ok=True)
    keras_path = out_dir / "b0_random.keras"
    build_model(ModelConfig(backbone="efficientnet_b0", weights="none")).save(keras_path)
    return convert_keras(keras_path, out_dir, ("int8",), np.stack(crops))["int8"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=40, help="inferences per model per round")
    parser.add_argument("--b0-reference", type=Path, metavar="DIR",
                        help="also time a random-weight EfficientNetB0 int8 model, written to DIR")
    args = parser.parse_args()
    config = load_config(DEFAULT_CONFIG)
    crops = [field_to_model_input(read_image_rgb(p), config)[0] for p in sorted(SAMPLE_FIELDS.glob("*.jpg"))]
    if args.b0_reference:
        args.models.append(random_b0_int8(args.b0_reference, crops))
    result: dict[str, dict[str, float]] = {}
    for threads in (1, 2):
        for name, ms in latency_in_turns(args.models, crops, threads, args.rounds, args.per_round).items():
            result.setdefault(name, {})[f"ms_per_image_{threads}_threads"] = ms
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
