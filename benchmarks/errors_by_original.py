"""Errors of an evaluation grouped by the BCCD field each TEST image is a copy of.

Kaggle's TEST images are augmented copies of BCCD fields, but their ``_<field>_`` ids do
not name the original. This matches each evaluated image to the most similar BCCD field
labelled with the same class: cosine similarity of the committed model's pooled backbone
features of the two located-cell crops. It prints, per class, each original's copies,
errors and what they were called, so one mislabelled or atypical original shows up as a
block of errors. The match is by appearance, not ground truth: check the pictures
(``--show`` writes, for each original with errors, it beside three of its copies, and the
JSON) before drawing conclusions.

Usage: python benchmarks/errors_by_original.py EVAL_DIR [--model models/hv_lite0.keras]
       [--bccd ../shared/data/bccd] [--show OUT_DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import cv2
import keras
import numpy as np
from train_field_duplicates import embed  # benchmarks/ is on sys.path when run as a script

from hv.annotations import read_field_labels
from hv.config import load_config
from hv.labels import CLASS_NAMES
from hv.model import BACKBONE_LAYER

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir")
    parser.add_argument("--model", default=str(REPO / "models" / "hv_lite0.keras"))
    parser.add_argument("--bccd", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--show", help="folder for one picture per original with errors")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    # The trained model's backbone: pooled, these are the features its head reads.
    backbone = keras.models.load_model(args.model).get_layer(BACKBONE_LAYER)
    originals = {field: CLASS_NAMES[index] for field, index in read_field_labels(Path(args.bccd)).items()}
    with open(Path(args.eval_dir) / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    report = {}
    for name in CLASS_NAMES:
        names = sorted(k for k, v in originals.items()
                       if v == name and (Path(args.bccd) / "JPEGImages" / f"{k}.jpg").exists())
        images = [r for r in rows if r["true"] == name]
        if not names or not images:
            continue
        sims = embed([r["path"] for r in images], config, backbone) @ embed(
            [str(Path(args.bccd) / "JPEGImages" / f"{n}.jpg") for n in names], config, backbone).T
        best = sims.argmax(1)
        per_original = {}
        for row, index, sim in zip(images, best, sims.max(1)):
            entry = per_original.setdefault(names[index], {"copies": 0, "errors": 0, "called": Counter(),
                                                            "min_similarity": 1.0, "examples": []})
            entry["copies"] += 1
            entry["errors"] += row["predicted"] != name
            entry["called"][row["predicted"]] += 1
            entry["min_similarity"] = min(entry["min_similarity"], round(float(sim), 3))
            if len(entry["examples"]) < 3:
                entry["examples"].append(row["path"])
        ranked = sorted(per_original.items(), key=lambda kv: -kv[1]["errors"])
        report[name] = {
            "images": len(images),
            "errors": sum(e["errors"] for _, e in ranked),
            "originals": {k: {**e, "called": dict(e["called"])} for k, e in ranked},
        }
        if args.show:
            out = Path(args.show)
            out.mkdir(parents=True, exist_ok=True)
            for original, entry in ranked:
                if not entry["errors"]:
                    continue
                pictures = [str(Path(args.bccd) / "JPEGImages" / f"{original}.jpg"), *entry["examples"]]
                tiles = [cv2.resize(cv2.imread(p), (320, 240)) for p in pictures]
                cv2.imwrite(str(out / f"{name}_{original}.jpg"), np.hstack(tiles))
    text = json.dumps(report, indent=1)
    print(text)
    if args.show:
        (Path(args.show) / "errors_by_original.json").write_text(text)


if __name__ == "__main__":
    main()
