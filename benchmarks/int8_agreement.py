"""Where full-int8 disagrees with its Keras model, and whether more calibration helps.

Converts the model to int8 with 200 and with 800 calibration crops from TRAIN (50 / 200 per
class, the stream's crop function), runs both with LiteRT on a class-balanced TEST sample,
and reports top-1 agreement with Keras overall and by the Keras model's top probability.

Usage: python benchmarks/int8_agreement.py [--model models/hv_lite0.keras] [--sample 400]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.cli import DEFAULT_MODEL
from hv.config import load_config
from mobile.convert import convert_keras
from mobile.export import sample_split
from training.data import discover
from training.evaluate import crop_fields

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--sample", type=int, default=400)
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    train, _ = discover(config.data.train_dir)
    test = sample_split(discover(config.data.test_dir)[0], args.sample, seed=1)
    crops, _ = crop_fields(list(test.paths), config)
    reference = KerasClassifier(args.model).predict(crops)
    confidence = reference.max(axis=1)
    result = {"model": args.model, "test_sample": len(test), "by_calibration_size": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for count in (200, 800):
            calibration, _ = crop_fields(list(sample_split(train, count, seed=0).paths), config)
            path = convert_keras(Path(args.model), Path(tmp) / str(count), ("int8",), calibration)["int8"]
            agree = LiteRTClassifier(path).predict(crops).argmax(1) == reference.argmax(1)
            result["by_calibration_size"][count] = {
                "agreement": round(float(agree.mean()), 4),
                "agreement_where_keras_top_prob_over": {
                    str(t): {
                        "images": int((confidence > t).sum()),
                        "agreement": round(float(agree[confidence > t].mean()), 4),
                    }
                    for t in (0.5, 0.6, 0.7)
                },
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
