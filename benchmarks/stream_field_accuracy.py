"""Field-level accuracy of locate -> crop -> classify on BCCD fields.

Each single-class field of the four classes in ``wbc_labels.csv`` is scored by the class
of its largest located white cell (the cell the training images centre on). Most of these
fields' augmentations are in TRAIN, so this checks the pipeline, not generalisation.

``--resize 0.5`` shows each field at half its width and height first (640x480 -> 320x240,
the size of blood-cells/'s copies): the same cells at the pixel density training saw them,
to tell a camera-resolution effect from the classifier's own errors.

Usage: python benchmarks/stream_field_accuracy.py [--model models/...] [--bccd ../shared/data/bccd] [--resize 0.5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import read_field_labels
from hv.bundled import DEFAULT_MODEL
from hv.classifier import load_classifier
from hv.config import load_config
from hv.field_images import classify_image
from hv.labels import CLASS_NAMES
from hv.preprocess import read_image_rgb
from training.metrics import classification_metrics

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--bccd", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--resize", type=float, default=1.0, help="show each field at this fraction of its size")
    parser.add_argument("--out", default=str(REPO / "out" / "stream_field_accuracy.json"))
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    classifier = load_classifier(args.model)
    labels = read_field_labels(Path(args.bccd))
    true, pred, no_cell = [], [], []
    for field, label in sorted(labels.items()):
        path = Path(args.bccd, "JPEGImages", f"{field}.jpg")
        if not path.exists():
            continue
        image = read_image_rgb(str(path))
        if args.resize != 1.0:
            image = cv2.resize(image, None, fx=args.resize, fy=args.resize, interpolation=cv2.INTER_AREA)
        boxes, probs, *_ = classify_image(classifier, image, config)
        if not len(boxes):
            no_cell.append(field)
            pred.append(-1)
        else:
            pred.append(int(probs[0].argmax()))  # boxes come largest nucleus first
        true.append(label)
    true, pred = np.array(true), np.array(pred)
    located = pred >= 0
    metrics = classification_metrics(true[located], pred[located])
    result = {"model": args.model, "resize": args.resize, "fields": len(true), "no_cell_found": no_cell,
              "field_accuracy": float(np.mean(true == pred)),
              "per_class_recall": {n: round(metrics["per_class"][n]["recall"], 4) for n in CLASS_NAMES},
              "support": {n: metrics["per_class"][n]["support"] for n in CLASS_NAMES},
              "confusion_matrix": metrics["confusion_matrix"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
