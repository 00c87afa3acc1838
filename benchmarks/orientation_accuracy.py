"""TEST accuracy of a model for each of the 8 turns and mirrors of the same cell crops.

A cell on a slide has no orientation, so a model that had learnt that would score the
same on every view. The spread between views is what ``hv evaluate --tta`` (the mean
over all 8) averages away; the last line is that mean's accuracy.

Usage: python benchmarks/orientation_accuracy.py [--model models/hv_lite0.keras] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv.classifier import load_classifier
from hv.config import load_config
from training.data import discover
from training.evaluate import crop_fields, symmetries

REPO = Path(__file__).resolve().parent.parent
VIEWS = [f"{turns * 90} deg{' mirrored' if mirrored else ''}" for turns in range(4) for mirrored in (False, True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--model", default=str(REPO / "models" / "hv_lite0.keras"))
    parser.add_argument("--data", help="folder data set (default: data.test_dir)")
    args = parser.parse_args()
    config = load_config(args.config)
    split, _ = discover(args.data or config.data.test_dir)
    classifier = load_classifier(args.model)
    probs = np.zeros((len(VIEWS), len(split), 4))
    for start in range(0, len(split), 256):
        crops, _ = crop_fields(list(split.paths[start : start + 256]), config)
        for i, view in enumerate(symmetries(crops)):
            probs[i, start : start + len(crops)] = classifier.predict(view)
        print(f"{min(start + 256, len(split))} / {len(split)}", flush=True)
    labels = np.array(split.labels)
    result = {view: round(float((p.argmax(1) == labels).mean()), 4) for view, p in zip(VIEWS, probs)}
    result["mean of the 8 (tta)"] = round(float((probs.mean(0).argmax(1) == labels).mean()), 4)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
