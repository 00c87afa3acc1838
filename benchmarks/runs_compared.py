"""Two runs' answers on the same held-out images: how far they differ per original, and what averaging gives.

Each run is one or more ``hv evaluate --held-out`` folders (the folds of a cross-validation,
pooled; every image in at most one of them). The first run's images are scored; the second
run must hold an answer for each. For the blood-cells source the figures are per original
(``training.metrics.accuracy_per_group`` with the shipped grouping): each run's accuracy,
their paired difference with its standard error over originals (how far two runs of one
recipe drift apart by chance: the noise a recipe comparison must beat), the originals whose
share right moved by more than 20 points, and the ensemble of the two (the mean of their
class probabilities, from ``predictions.csv``'s ``p_<class>`` columns). Validation only.

Usage: python benchmarks/runs_compared.py --first DIR [DIR ...] --second DIR [DIR ...]
           [--source blood-cells_TRAIN] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from grouped_ci import image_key, pooled_rows, probabilities  # benchmarks/ is on sys.path when run as a script

from hv.labels import CLASS_NAMES, OUTPUT_NAMES
from training.data import field_group, load_originals
from training.metrics import accuracy_per_group, group_members


def figures(true: np.ndarray, probs: np.ndarray, groups: list[str]) -> dict:
    right = (probs.argmax(axis=1) == true).astype(float)
    return {"by_image": round(float(right.mean()), 4), "per_original": round(accuracy_per_group(groups, right), 4),
            "recall_by_image": {name: round(float(right[true == k].mean()), 3)
                                for k, name in enumerate(CLASS_NAMES) if (true == k).any()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", nargs="+", type=Path, required=True)
    parser.add_argument("--second", nargs="+", type=Path, required=True)
    parser.add_argument("--source", default="blood-cells_TRAIN", help="the source sub-folder to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    first = pooled_rows([str(d / args.source) for d in args.first])
    second = {image_key(r["path"]): r for r in pooled_rows([str(d / args.source) for d in args.second])}
    missing = [r["path"] for r in first if image_key(r["path"]) not in second]
    if missing:
        raise SystemExit(f"the second run has no answer for {len(missing)} images, e.g. {missing[0]}")
    paired = [second[image_key(r["path"])] for r in first]
    true = np.array([OUTPUT_NAMES.index(r["true"]) for r in first])
    originals = load_originals("bundled")
    groups = [field_group(r["path"], int(t), originals=originals) for r, t in zip(first, true)]
    p1, p2 = probabilities(first), probabilities(paired)
    members = group_members(groups)
    share = {name: np.array([np.mean(p.argmax(axis=1)[m] == true[m]) for m in members.values()])
             for name, p in (("first", p1), ("second", p2))}
    moved = share["first"] - share["second"]
    result = {
        "source": args.source, "images": len(first), "originals": len(members),
        "first": figures(true, p1, groups), "second": figures(true, p2, groups),
        "ensemble_mean_probabilities": figures(true, (p1 + p2) / 2, groups),
        "per_original_difference": {"mean": round(float(moved.mean()), 4),
                                    "standard_error": round(float(moved.std(ddof=1) / np.sqrt(len(moved))), 4),
                                    "sd_over_originals": round(float(moved.std(ddof=1)), 4),
                                    "originals_moved_over_20_points": int((np.abs(moved) > 0.2).sum())},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
