"""Two runs' answers on the same held-out images: how far they differ per original, and what averaging gives.

Each run is one or more ``hv evaluate --held-out`` folders (the folds of a cross-validation,
pooled; every image in at most one of them). The first run's images are scored; the second
run must hold an answer for each. For the blood-cells source the figures are per original
(``training.metrics.accuracy_per_group`` with the shipped grouping): each run's accuracy,
their paired difference with its standard error over originals (how far two runs of one
recipe drift apart by chance: the noise a recipe comparison must beat), the originals whose
share right moved by more than 20 points, and the ensemble of the two (the mean of their
class probabilities, from ``predictions.csv``'s ``p_<class>`` columns) with its gain over the
mean of the two runs, paired per original: mean, standard error, a 95 % bootstrap interval over
originals, and the gain on each of the first run's folders (its folds) apart. For other sources
(``--source pbc_TRAIN``: one image per cell) each image is its own original; for a source of
cells outside the four (``--source pbc_OTHER_train``) "right" is "flagged as other". Validation only.

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
from training.metrics import accuracy_per_group, group_members, grouped_interval


def figures(true: np.ndarray, probs: np.ndarray, groups: list[str]) -> dict:
    right = (probs.argmax(axis=1) == true).astype(float)
    return {"by_image": round(float(right.mean()), 4), "per_original": round(accuracy_per_group(groups, right), 4),
            "recall_by_image": {name: round(float(right[true == k].mean()), 3)
                                for k, name in enumerate(CLASS_NAMES) if (true == k).any()}}


def shares_right(probs: np.ndarray, true: np.ndarray, members: dict[str, list[int]]) -> np.ndarray:
    """Each original's share of copies called right."""
    answers = probs.argmax(axis=1)
    return np.array([np.mean(answers[m] == true[m]) for m in members.values()])


def paired_gain(gain: np.ndarray) -> dict:
    """Mean of per-original differences, its standard error and a bootstrap 95 % interval over originals."""
    low, high = grouped_interval(list(range(len(gain))), gain)  # one value per original: each its own group
    return {"mean": round(float(gain.mean()), 4),
            "standard_error": round(float(gain.std(ddof=1) / np.sqrt(len(gain))), 4),
            "interval_95": [round(low, 4), round(high, 4)], "originals": len(gain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", nargs="+", type=Path, required=True)
    parser.add_argument("--second", nargs="+", type=Path, required=True)
    parser.add_argument("--source", default="blood-cells_TRAIN", help="the source sub-folder to compare")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    other = "OTHER" in args.source
    folds = [pooled_rows([str(d / args.source)], other) for d in args.first]
    first = [row for fold in folds for row in fold]
    second = {image_key(r["path"]): r for r in pooled_rows([str(d / args.source) for d in args.second], other)}
    missing = [r["path"] for r in first if image_key(r["path"]) not in second]
    if missing:
        raise SystemExit(f"the second run has no answer for {len(missing)} images, e.g. {missing[0]}")
    paired = [second[image_key(r["path"])] for r in first]
    true = np.array([OUTPUT_NAMES.index(r["true"]) for r in first])
    originals = load_originals("bundled")
    if args.source.startswith("blood-cells"):
        groups = [field_group(r["path"], int(t), originals=originals) for r, t in zip(first, true)]
    else:
        groups = [image_key(r["path"]) for r in first]
    p1, p2 = probabilities(first), probabilities(paired)
    members = group_members(groups)
    share = {name: shares_right(p, true, members)
             for name, p in (("first", p1), ("second", p2), ("ensemble", (p1 + p2) / 2))}
    moved = share["first"] - share["second"]
    gain = share["ensemble"] - (share["first"] + share["second"]) / 2
    # The first run's rows are its folders' rows in order: each folder's originals, and their gains.
    gain_by_fold, start, names = {}, 0, list(members)
    for folder, fold in zip(args.first, folds):
        in_fold = set(groups[start:start + len(fold)])
        start += len(fold)
        gain_by_fold[folder.name] = paired_gain(gain[[k for k, name in enumerate(names) if name in in_fold]])
    result = {
        "source": args.source, "images": len(first), "originals": len(members),
        "first": figures(true, p1, groups), "second": figures(true, p2, groups),
        "ensemble_mean_probabilities": figures(true, (p1 + p2) / 2, groups),
        "ensemble_gain_per_original": paired_gain(gain),
        "ensemble_gain_per_original_by_fold": gain_by_fold,
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
