"""TEST accuracy of an ensemble: the mean class probabilities of models trained on other seeds.

Each model classifies the same cell crops (the stream's crop function); the ensemble's
answer is the class with the highest mean probability. Reports every member and the
ensemble on TEST and TEST_SIMPLE: accuracy, macro-F1, eosinophil recall. A diagnostic of how
much of the error is seed-to-seed variance (an ensemble removes some of it) rather than
bias shared by every seed; it costs one model's time per member, so nothing ships it.

Usage: python benchmarks/seed_ensemble.py RUN/model.keras RUN2/model.keras ... [--out out/seed_ensemble]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv.classifier import load_classifier
from hv.config import load_config
from training.data import discover
from training.evaluate import crop_fields
from training.metrics import classification_metrics

REPO = Path(__file__).resolve().parent.parent


def summary(true: np.ndarray, probs: np.ndarray) -> dict:
    metrics = classification_metrics(true, probs.argmax(axis=1))
    return {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
            "eosinophil_recall": round(metrics["per_class"]["eosinophil"]["recall"], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help=".keras or .tflite models")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--out", default=str(REPO / "out" / "seed_ensemble"))
    args = parser.parse_args()
    config = load_config(args.config)
    result = {"models": args.models}
    for name, folder in (("TEST", config.data.test_dir),
                         ("TEST_SIMPLE", str(Path(config.data.test_dir).parent / "TEST_SIMPLE"))):
        split, _ = discover(folder)
        true = np.array(split.labels)
        crops, _ = crop_fields(list(split.paths), config)
        members = [load_classifier(model).predict(crops) for model in args.models]
        result[name] = {"members": [summary(true, probs) for probs in members],
                        "ensemble": summary(true, np.mean(members, axis=0)), "n_images": int(len(true))}
        print(name, json.dumps(result[name]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "seed_ensemble.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
