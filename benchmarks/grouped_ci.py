"""Accuracy with a 95 % interval that respects copies: a bootstrap over original fields.

blood-cells/TEST holds dozens of augmented copies of each original field, so its 2,487
images are not 2,487 independent cells and a binomial interval is far too narrow. This
resamples whole original fields (``training.data.field_group`` with the shipped grouping of
blood-cells/ by original, ``--originals``; an image it does not list falls back to the
``_<field>_<copy>`` id of its file, per class) with replacement and reports the 2.5th and
97.5th percentiles of accuracy. For a set of one image per cell (pbc/) every image is its
own group and the interval is the ordinary bootstrap.

With ``--versus OTHER_DIR`` (another model's evaluation of the same images) it also reports
each folder's accuracy minus the other's, paired image by image, with the same interval:
whether two models (an int8 package and its Keras model) differ by more than the copies allow.

With ``--pool`` the EVAL_DIRs are one evaluation: the folds of a cross-validation (``hv train
--fold I/K``, then ``hv evaluate --held-out`` of each fold's model), each original held out in
exactly one of them; an image in two of them is an error. ``--versus`` then takes the other
run's folds too, pooled the same way.

With ``--view whole`` (or ``cut``) it scores only the images whose located cell ``hv evaluate``
saw that way (predictions.csv's ``view``): what the live count, which classifies only whole
views, can expect.

With ``--whole-vs-cut`` it also compares, within each original that has copies seen both ways,
the share of its whole copies called right with the share of its cut ones: the cost of a cut
view with the original held fixed (the images' mix of originals differs between the views).

With ``--new-originals`` it scores only the images whose original field has no copy in
blood-cells/TRAIN (by the grouping): what the model does on fields it never saw.

It also reports ``accuracy_per_original``: the share of each original's copies called
right, averaged over originals, so that one original with 155 copies (a tenth of a
validation split) weighs as much as one with 5; ``per_class`` gives, for each class, the
originals and their copies; ``--list`` prints every original with its copies and answers;
``--show FILE`` draws one copy of each, worst answered first.

Usage: python benchmarks/grouped_ci.py EVAL_DIR [EVAL_DIR ...] [--pool] [--draws 2000] [--versus OTHER_DIR [...]]
       [--view whole|cut] [--whole-vs-cut] [--new-originals] [--list] [--show FILE.jpg]
(EVAL_DIR: a folder with the predictions.csv that hv evaluate writes)
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np

from hv.labels import OUTPUT_NAMES
from training.data import field_group, load_originals, original_key
from training.metrics import accuracy_per_group, group_members, grouped_interval


def read_rows(folder: str | Path, other: bool = False) -> list[dict]:
    """The four-class rows of an evaluation's predictions.csv; with ``other``, the rows of cells outside the four.

    A ``predictions.csv.gz`` stands in for it (the held-out predictions kept in ``benchmarks/results/``).
    """
    path = Path(folder) / "predictions.csv"
    packed = path.with_suffix(".csv.gz")
    if not path.is_file() and not packed.is_file():
        raise SystemExit(f"{path} does not exist: give the folder of one source that hv evaluate wrote "
                         "(e.g. out/EVAL/blood-cells_TEST)")
    with (open(path, newline="") if path.is_file() else gzip.open(packed, "rt", newline="")) as f:
        return [r for r in csv.DictReader(f) if (r["true"] == OUTPUT_NAMES[-1]) == other]


def image_key(path: str) -> str:
    """Class folder and file name: the same image in two evaluations, whether run with absolute or relative paths."""
    return "/".join(Path(path).parts[-2:])


def probabilities(rows: list[dict]) -> np.ndarray:
    """(n, 5) class probabilities of predictions.csv rows (its ``p_<class>`` columns)."""
    columns = [f"p_{name}" for name in OUTPUT_NAMES]
    if rows and columns[0] not in rows[0]:
        raise SystemExit("a predictions.csv without class probabilities (written before 2026-12-05): evaluate again")
    return np.array([[float(row[c]) for c in columns] for row in rows])


def pooled_rows(folders: list[str], other: bool = False) -> list[dict]:
    """The rows of several evaluations that hold disjoint images (the folds of one cross-validation)."""
    rows, seen = [], {}
    for folder in folders:
        for row in read_rows(folder, other):
            key = image_key(row["path"])
            if key in seen:
                raise SystemExit(f"{key} is in both {seen[key]} and {folder}: --pool takes evaluations of disjoint "
                                 "images (one per fold of a cross-validation)")
            seen[key] = folder
            rows.append(row)
    return rows


def by_original(rows: list[dict], groups: list[str], correct: np.ndarray, listing: bool) -> dict:
    """Accuracy with every original weighted alike, and how many originals each class rests on."""
    members = group_members(groups)
    per_class: dict[str, dict[str, int]] = {}
    for group, m in members.items():
        true = Counter(rows[i]["true"] for i in m).most_common(1)[0][0]
        entry = per_class.setdefault(true, {"originals": 0, "images": 0})
        entry["originals"] += 1
        entry["images"] += len(m)
        if listing:
            answers = dict(Counter(rows[i]["predicted"] for i in m).most_common())
            print(f"{group.split(':')[-1]:20s} {true:11s} {len(m):4d} copies, answered {answers}")
    return {"accuracy_per_original": round(accuracy_per_group(groups, correct), 4),
            "per_class": dict(sorted(per_class.items()))}


def whole_versus_cut(rows: list[dict], groups: list[str], correct: np.ndarray) -> dict:
    """Per original seen both whole and cut: its whole copies' accuracy, its cut copies', and the mean difference."""
    shares: dict[str, dict[str, list[float]]] = {}
    for row, group, right in zip(rows, groups, correct):
        shares.setdefault(group, {}).setdefault(row["view"], []).append(right)
    both = [(np.mean(v["whole"]), np.mean(v["cut"])) for v in shares.values() if "whole" in v and "cut" in v]
    if not both:
        return {"originals": 0}
    whole, cut = np.array(both).T
    return {"originals": len(both), "whole": round(float(whole.mean()), 4), "cut": round(float(cut.mean()), 4),
            "difference": round(float((whole - cut).mean()), 4),
            "originals_better_whole": int((whole > cut).sum()), "originals_better_cut": int((whole < cut).sum())}


def originals_picture(rows: list[dict], groups: list[str], out: Path, tile_px: int = 200, columns: int = 6) -> None:
    """One copy of each original, worst answered first, captioned with its class, copies and share right."""
    import cv2

    def share_right(m: list[int]) -> float:
        return float(np.mean([rows[i]["true"] == rows[i]["predicted"] for i in m]))

    tiles = []
    for m in sorted(group_members(groups).values(), key=share_right):
        right = share_right(m)
        true = Counter(rows[i]["true"] for i in m).most_common(1)[0][0]
        wrong_as = Counter(rows[i]["predicted"] for i in m if rows[i]["predicted"] != true).most_common(1)
        image = cv2.imread(rows[m[0]]["path"])
        tile = np.full((tile_px + 34, tile_px, 3), 255, np.uint8)
        if image is not None:
            tile[34:] = cv2.resize(image, (tile_px, tile_px), interpolation=cv2.INTER_AREA)
        lines = (f"{true}, {len(m)} copies", f"{right:.0%} right" + (f", else {wrong_as[0][0]}" if wrong_as else ""))
        for k, line in enumerate(lines):
            cv2.putText(tile, line, (3, 13 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % columns)
    grid = np.vstack([np.hstack(tiles[r : r + columns]) for r in range(0, len(tiles), columns)])
    cv2.imwrite(str(out), grid, [cv2.IMWRITE_JPEG_QUALITY, 85])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dirs", nargs="+")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--versus", nargs="+", help="another evaluation of the same images (with --pool, its "
                        "folds): the paired difference")
    parser.add_argument("--pool", action="store_true", help="the EVAL_DIRs are the folds of one cross-validation")
    parser.add_argument("--originals", default="bundled",
                        help='which images are copies of one original: "bundled", "none" (file-name ids) or a CSV')
    parser.add_argument("--view", choices=("whole", "cut", "not_located"),
                        help="score only the images whose cell was seen this way (predictions.csv's view)")
    parser.add_argument("--whole-vs-cut", action="store_true",
                        help="within each original seen both ways: whole copies' accuracy minus cut copies'")
    parser.add_argument("--new-originals", action="store_true",
                        help="score only images whose original has no copy in blood-cells/TRAIN")
    parser.add_argument("--list", action="store_true", help="print every original: class, copies, answers")
    parser.add_argument("--show", type=Path, help="write a picture of one copy of each original (one folder only)")
    args = parser.parse_args()
    originals = load_originals(args.originals)
    trained = {group for key, group in originals.items() if key.split("/")[1] == "TRAIN"}
    other = None
    if args.versus:
        other = {image_key(r["path"]): r["true"] == r["predicted"] for r in pooled_rows(args.versus)}
    results = {}
    evaluations = {" + ".join(args.eval_dirs): pooled_rows(args.eval_dirs)} if args.pool else \
        {folder: read_rows(folder) for folder in args.eval_dirs}
    for folder, rows in evaluations.items():
        if args.new_originals:
            rows = [r for r in rows if originals.get(original_key(r["path"])) not in trained]
        if (args.view or args.whole_vs_cut) and rows and "view" not in rows[0]:
            raise SystemExit(f"{folder}: its predictions.csv has no view column (written before 2026-12-05): "
                             "evaluate again")
        if args.view:
            rows = [r for r in rows if r["view"] == args.view]
        groups = [field_group(r["path"], OUTPUT_NAMES.index(r["true"]), originals=originals) for r in rows]
        correct = np.array([r["true"] == r["predicted"] for r in rows], float)
        low, high = grouped_interval(groups, correct, args.draws)
        results[folder] = {"n_images": len(rows), "groups": len(set(groups)), "accuracy": round(correct.mean(), 4),
                           "ci95_grouped": [round(low, 4), round(high, 4)],
                           **by_original(rows, groups, correct, args.list)}
        if args.whole_vs_cut:
            results[folder]["whole_vs_cut"] = whole_versus_cut(rows, groups, correct)
        if args.show:
            originals_picture(rows, groups, args.show)
        if other is not None:
            missing = [r["path"] for r in rows if image_key(r["path"]) not in other]
            if missing:
                raise SystemExit(f"{' + '.join(args.versus)}: no prediction for {len(missing)} images of {folder}, "
                                 f"e.g. {missing[0]}: compare evaluations of the same images")
            versus_correct = np.array([other[image_key(r["path"])] for r in rows], float)
            difference = correct - versus_correct
            low, high = grouped_interval(groups, difference, args.draws)
            results[folder]["minus_versus"] = {"versus": " + ".join(args.versus),
                                               "difference": round(difference.mean(), 4),
                                               "ci95_grouped": [round(low, 4), round(high, 4)],
                                               "images_differing": int(np.abs(difference).sum()),
                                               # the other run on the same images, each original weighted alike
                                               "versus_accuracy_per_original":
                                                   round(accuracy_per_group(groups, versus_correct), 4)}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
