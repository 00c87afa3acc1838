"""Errors of an evaluation grouped by the BCCD field each TEST image is a copy of.

Kaggle's TEST images are augmented copies of BCCD fields, but their ``_<field>_`` ids do
not name the original. This matches each evaluated image to the most similar BCCD field
labelled with the same class: cosine similarity of the committed model's pooled backbone
features of the two located-cell crops. It prints, per class, each original's copies,
errors and what they were called, so one mislabelled or atypical original shows up as a
block of errors. The match is by appearance, not ground truth: check the pictures
(``--show`` writes, for each original with errors, it beside three of its copies, and the
JSON) before drawing conclusions.

Each original also carries the size of its annotated white cell (square root of the VOC
box's area, in BCCD pixels). With ``--train`` the training folder's images are matched
the same way, so each original shows how many training images are its copies and how
close the nearest training image of its class comes (``train_max_similarity``): an
original that TRAIN never showed the model stands out against its TEST copies' similarity.
Originals that only training images match are listed too (with no TEST copies). A
``summary`` closes the report: the five worst originals' share of the errors, and the
accuracy of the images that are not copies of the worst one.

Usage: python benchmarks/errors_by_original.py EVAL_DIR [--model models/hv_lite0.keras]
       [--bccd ../shared/data/bccd] [--train ../shared/data/blood-cells/TRAIN] [--show OUT_DIR]
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

from hv.annotations import read_field_labels, read_voc_boxes
from hv.config import load_config
from hv.labels import CLASS_NAMES
from hv.model import BACKBONE_LAYER
from training.data import discover

REPO = Path(__file__).resolve().parent.parent


def _summary(entry: dict) -> dict:
    """An original's entry as JSON: its copies' similarities become their minimum and median."""
    out = {k: v for k, v in entry.items() if k != "similarities"}
    out["called"] = dict(entry["called"])
    sims = entry["similarities"]  # empty for an original that only training images were matched to
    out["min_similarity"] = round(min(sims), 3) if sims else None
    out["median_similarity"] = round(float(np.median(sims)), 3) if sims else None
    return out


def summarise(report: dict) -> dict:
    """How concentrated the errors are: the five worst originals' share, and the accuracy
    of every image that is not a copy of the worst original."""
    originals = [(e["errors"], e["copies"], k) for v in report.values() for k, e in v["originals"].items()]
    ranked = sorted(originals, reverse=True)
    images, errors = sum(v["images"] for v in report.values()), sum(v["errors"] for v in report.values())
    worst_errors, worst_copies, worst = ranked[0] if ranked else (0, 0, None)
    rest = images - worst_copies
    return {
        "images": images,
        "errors": errors,
        "five_worst_originals": [k for _, _, k in ranked[:5]],
        "five_worst_share_of_errors": round(sum(e for e, _, _ in ranked[:5]) / errors, 3) if errors else 0.0,
        "worst_original": worst,
        "accuracy_without_worst_original": round(1 - (errors - worst_errors) / rest, 4) if rest else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir")
    parser.add_argument("--model", default=str(REPO / "models" / "hv_lite0.keras"))
    parser.add_argument("--bccd", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--train", help="training folder whose images are matched to the originals too")
    parser.add_argument("--show", help="folder for one picture per original with errors")
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    # The trained model's backbone: pooled, these are the features its head reads.
    backbone = keras.models.load_model(args.model).get_layer(BACKBONE_LAYER)
    originals = {field: CLASS_NAMES[index] for field, index in read_field_labels(Path(args.bccd)).items()}
    with open(Path(args.eval_dir) / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    train_paths = {name: [] for name in CLASS_NAMES}
    if args.train:
        train, _ = discover(args.train)
        for path, label in zip(train.paths, train.labels):
            train_paths[CLASS_NAMES[label]].append(path)
    report = {}
    for name in CLASS_NAMES:
        names = sorted(k for k, v in originals.items()
                       if v == name and (Path(args.bccd) / "JPEGImages" / f"{k}.jpg").exists())
        images = [r for r in rows if r["true"] == name]
        if not names or not images:
            continue
        reference = embed([str(Path(args.bccd) / "JPEGImages" / f"{n}.jpg") for n in names], config, backbone)
        sims = embed([r["path"] for r in images], config, backbone) @ reference.T
        best = sims.argmax(1)
        train_sims = (embed(train_paths[name], config, backbone) @ reference.T
                      if train_paths[name] else np.zeros((0, len(names))))
        train_copies = Counter(train_sims.argmax(1).tolist())
        per_original = {}
        for index in sorted(set(best.tolist()) | set(train_copies)):
            voc = Path(args.bccd) / "Annotations" / f"{names[index]}.xml"
            boxes = read_voc_boxes(voc) if voc.exists() else np.zeros((0, 4))
            per_original[names[index]] = {
                "copies": 0, "errors": 0, "called": Counter(), "similarities": [], "examples": [],
                "wbc_box_px": [round(float(np.sqrt((b[2] - b[0]) * (b[3] - b[1])))) for b in boxes],
            }
            if args.train:
                per_original[names[index]]["train_copies"] = train_copies.get(index, 0)
                per_original[names[index]]["train_max_similarity"] = round(float(train_sims[:, index].max()), 3)
        for row, index, sim in zip(images, best, sims.max(1)):
            entry = per_original[names[index]]
            entry["copies"] += 1
            entry["errors"] += row["predicted"] != name
            entry["called"][row["predicted"]] += 1
            entry["similarities"].append(float(sim))
            if len(entry["examples"]) < 3:
                entry["examples"].append(row["path"])
        ranked = sorted(per_original.items(), key=lambda kv: (-kv[1]["errors"], -kv[1]["copies"]))
        report[name] = {
            "images": len(images),
            "errors": sum(e["errors"] for _, e in ranked),
            "originals": {k: _summary(e) for k, e in ranked},
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
    report["summary"] = summarise(report)
    text = json.dumps(report, indent=1)
    print(text)
    if args.show:
        (Path(args.show) / "errors_by_original.json").write_text(text)


if __name__ == "__main__":
    main()
