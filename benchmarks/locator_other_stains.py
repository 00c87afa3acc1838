"""The locator on stains whose nuclei are not blue-purple, and on views with no white cell.

When a field has no blue-purple nucleus, ``hv.locator`` searches it again for nuclei as its
densest objects (``dense_score``: optical density above the plasma's, over
``locator.dense_nucleus_od``). That must find the cell under another stain and must not take red cells
for nuclei where there is no white cell (a moving slide shows many such views). Two checks,
for each threshold in ``--thresholds`` (0 = the fallback off):

- **Found**: ``--images`` random pbc/TRAIN images (one centred cell each; TRAIN only) under
  each synthetic lab of ``benchmarks/synthetic_labs.py``: the share with a located cell, and
  the share whose first box holds the image centre (the cell, not something else).
- **Not invented**: views of the BCCD fields with no white cell: half-width, half-height
  windows on a grid of 9, kept where they do not touch an annotated white-cell box grown by
  a quarter; located with the whole field's cell diameter (as the stream's running scale
  does). The share of such views where anything is located; as they are, and under the
  brown-red stain. Reported for the even-positioned fields (where the threshold is chosen) and
  the odd-positioned ones (held out).

It also gives what the threshold was chosen from: each image's or view's *peak*, the density
(``dense_score``, blurred as the locator blurs it) that a nucleus-sized area (``min_area_frac``
of a cell) exceeds: its highest over the views with no white cell, and its low percentiles
over the brown-red pbc/TRAIN cells. The default (2.0) lies between the even half's highest
view (1.29) and the cells' 1st percentile (2.61), nearer the cells for a margin against red
cells, 2026-12-05.

Where a field's red cells are not eosin-pink (``hv.stain.red_cells_pink``: another stain),
the search needs less: ``locator.other_stain_nucleus_od``. ``--other-stain-thresholds`` varies
it (``dense_nucleus_od`` as configured) and adds a third check, **BCCD drawn brown-red**: every
annotated BCCD field under the brown-red stain, located as ``locator_accuracy.py`` scores the
locator (precision and recall of the annotated white cells at IoU 0.5), per half; a BCCD field
is blurrier and its nuclei lighter than PBC's, so this is where the search is hardest. The gate
itself is reported as each set's green / blue absorption range (``green_over_blue``).

``--reach FOLDER ...`` (class folders) instead counts, in each folder, the images where the
blue-purple search finds no cell and how many of them the density search now locates: which
training and scoring crops the density search changes at all.

Writes ``locator_other_stains.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
from synthetic_labs import SHIFTS, shift_image  # benchmarks/ is on sys.path when run as a script

from hv.annotations import match_boxes, read_voc_boxes
from hv.config import LocatorConfig, load_config
from hv.locator import cell_diameter_px, dense_score, locate_cells
from hv.preprocess import read_image_rgb
from hv.stain import green_over_blue
from training.data import discover

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def views_without_white_cells(image_rgb: np.ndarray, white_cells: np.ndarray) -> list[np.ndarray]:
    """Half-size windows on a 3 x 3 grid that keep clear of every white-cell box grown by a quarter."""
    height, width = image_rgb.shape[:2]
    grown = white_cells.astype(np.float64).copy()
    if len(grown):
        half = (grown[:, 2:] - grown[:, :2]) * 0.25
        grown[:, :2] -= half
        grown[:, 2:] += half
    views = []
    for top in (0, height // 4, height // 2):
        for left in (0, width // 4, width // 2):
            box = (left, top, left + width // 2, top + height // 2)
            if not any(b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3] for b in grown):
                views.append(image_rgb[box[1]:box[3], box[0]:box[2]])
    return views


def blob_peak(image_rgb: np.ndarray, diameter_px: float, locator: LocatorConfig) -> float:
    """The density a nucleus-sized area of the image exceeds (the locator's working width and blur)."""
    scale = min(1.0, locator.work_width_px / image_rgb.shape[1])
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    diameter = diameter_px * scale
    density = cv2.GaussianBlur(dense_score(small), (0, 0), sigmaX=max(1.0, diameter / 60))
    nucleus_area = int(locator.min_area_frac * np.pi * (diameter / 2) ** 2)
    return float(np.sort(density.ravel())[::-1][min(nucleus_area, density.size - 1)])


def reach(folders: list[str], config) -> None:
    """Per folder: images with no blue-purple cell, and how many of them the density search locates."""
    without = dataclasses.replace(config.locator, dense_nucleus_od=0.0)
    for folder in folders:
        paths = discover(folder, any_other=True, require_all=False)[0].paths  # unusable files left out, as in training
        missed = found = 0
        for path in paths:
            image = read_image_rgb(str(path))
            diameter = cell_diameter_px(image, config.locator)
            if not len(locate_cells(image, without, diameter)):
                missed += 1
                found += len(locate_cells(image, config.locator, diameter)) > 0
        print(f"{folder}: {len(paths)} images, no blue-purple cell in {missed}, of which the density search "
              f"locates {found}", flush=True)


def brown_fields(bccd: str) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Every annotated BCCD field drawn brown-red with its white-cell boxes, by half (even / odd position)."""
    fields: dict[str, list] = {"even": [], "odd": []}
    for position, path in enumerate(sorted(Path(bccd, "JPEGImages").glob("*.jpg"))):
        annotation = Path(bccd, "Annotations", path.stem + ".xml")
        if annotation.is_file():
            boxes = read_voc_boxes(annotation)
            fields["even" if position % 2 == 0 else "odd"].append(
                (shift_image(read_image_rgb(str(path)), "brown_stain"), boxes))
    return fields


def precision_recall(fields: list[tuple[np.ndarray, np.ndarray]], locator: LocatorConfig) -> dict:
    """The located boxes against the annotated white cells at IoU 0.5 (as ``locator_accuracy.py``)."""
    tp = fp = fn = 0
    for image, truth in fields:
        t, f, n = match_boxes(locate_cells(image, locator), truth, 0.5)
        tp, fp, fn = tp + t, fp + f, fn + n
    return {"precision": round(tp / max(tp + fp, 1), 4), "recall": round(tp / max(tp + fn, 1), 4), "cells": tp + fn}


def other_stain_thresholds(args, config, images: dict, views: dict) -> dict:
    """Each ``other_stain_nucleus_od``: PBC cells found under every shift, views invented, BCCD brown-red fields."""
    fields = brown_fields(args.bccd)
    report = {"green_over_blue": {}, "thresholds": {}}
    for shift, shifted in images.items():
        ratios = [green_over_blue(image) for image in shifted]
        report["green_over_blue"][f"pbc/TRAIN {shift}"] = [round(min(ratios), 3), round(max(ratios), 3)]
    for half, by_shift in views.items():
        for shift, shown in by_shift.items():
            ratios = [green_over_blue(v) for v, _ in shown]
            report["green_over_blue"][f"BCCD views {half} {shift}"] = [round(min(ratios), 3), round(max(ratios), 3)]
    print(f"green / blue absorption (min, max): {json.dumps(report['green_over_blue'])}", flush=True)
    for threshold in args.other_stain_thresholds:
        locator = dataclasses.replace(config.locator, other_stain_nucleus_od=threshold)
        row = {"found": {}, "invented": {}, "bccd_brown": {}}
        for shift, shifted in images.items():
            firsts = [locate_cells(image, locator) for image in shifted]
            row["found"][shift] = round(float(np.mean(
                [len(b) > 0 and b[0, 0] < im.shape[1] / 2 < b[0, 2] and b[0, 1] < im.shape[0] / 2 < b[0, 3]
                 for b, im in zip(firsts, shifted)])), 4)
        for half, by_shift in views.items():
            row["invented"][half] = {shift: round(float(np.mean([len(locate_cells(v, locator, d)) > 0
                                                                 for v, d in shown])), 4)
                                     for shift, shown in by_shift.items()}
            row["bccd_brown"][half] = precision_recall(fields[half], locator)
        report["thresholds"][f"{threshold:g}"] = row
        print(f"other-stain threshold {threshold:g}: BCCD brown-red precision / recall (even | odd) "
              f"{row['bccd_brown']['even']['precision']:.3f} / {row['bccd_brown']['even']['recall']:.3f} | "
              f"{row['bccd_brown']['odd']['precision']:.3f} / {row['bccd_brown']['odd']['recall']:.3f}; "
              f"views with a cell invented, brown-red (even / odd) {row['invented']['even']['brown_stain']:.1%} / "
              f"{row['invented']['odd']['brown_stain']:.1%}, as they are {row['invented']['even']['none']:.1%} / "
              f"{row['invented']['odd']['none']:.1%}; PBC found and centred: "
              + ", ".join(f"{s} {v:.0%}" for s, v in row["found"].items()), flush=True)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 1.5, 2.0, 2.5])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--pbc", default=str(DATA / "pbc" / "TRAIN"))
    parser.add_argument("--bccd", default=str(DATA / "bccd"))
    parser.add_argument("--reach", nargs="+", default=[], metavar="FOLDER",
                        help="only count where the density search changes the crops of these class folders")
    parser.add_argument("--other-stain-thresholds", type=float, nargs="+", metavar="OD",
                        help="vary locator.other_stain_nucleus_od instead (fields whose red cells are not pink)")
    parser.add_argument("--out", default=str(ROOT / "out" / "locator_other_stains"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    if args.reach:
        reach(args.reach, config)
        return
    started = time.perf_counter()
    paths = list(discover(args.pbc)[0].paths)
    picked = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))[: args.images]]
    images = {shift: [shift_image(read_image_rgb(p), shift) for p in picked] for shift in SHIFTS}
    fields = sorted(Path(args.bccd, "JPEGImages").glob("*.jpg"))
    views: dict[str, dict[str, list]] = {half: {"none": [], "brown_stain": []} for half in ("even", "odd")}
    for position, path in enumerate(fields):
        annotation = Path(args.bccd, "Annotations", path.stem + ".xml")
        if not annotation.is_file():
            continue
        image = read_image_rgb(str(path))
        diameter = cell_diameter_px(image, config.locator)
        boxes = read_voc_boxes(annotation)
        for view in views_without_white_cells(image, boxes):
            for shift in ("none", "brown_stain"):
                views["even" if position % 2 == 0 else "odd"][shift].append((shift_image(view, shift), diameter))
    print(f"{args.images} pbc/TRAIN images, {len(views['even']['none'])} + {len(views['odd']['none'])} BCCD views "
          f"with no white cell [{time.perf_counter() - started:.0f} s]", flush=True)

    if args.other_stain_thresholds:
        report = {"images": args.images, "views": {half: len(v["none"]) for half, v in views.items()},
                  **other_stain_thresholds(args, config, images, views)}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "locator_other_stains.json").write_text(json.dumps(report, indent=2) + "\n")
        return
    report = {"images": args.images, "views": {half: len(v["none"]) for half, v in views.items()}, "thresholds": {}}
    cells = np.array([blob_peak(image, cell_diameter_px(image, config.locator), config.locator)
                      for image in images["brown_stain"]])
    report["peaks"] = {"brown_stain_cells": {f"p{q}": round(float(np.percentile(cells, q)), 3) for q in (1, 5, 50)},
                       "views_without_white_cells": {
                           f"{half} {shift}": round(max(blob_peak(v, d, config.locator) for v, d in shown), 3)
                           for half, by_shift in views.items() for shift, shown in by_shift.items()}}
    print(f"peaks: {json.dumps(report['peaks'])}", flush=True)
    for threshold in args.thresholds:
        locator = dataclasses.replace(config.locator, dense_nucleus_od=threshold)
        row = {"found": {}, "invented": {}}
        for shift, shifted in images.items():
            firsts = [locate_cells(image, locator) for image in shifted]
            centred = [len(b) > 0 and b[0, 0] < im.shape[1] / 2 < b[0, 2] and b[0, 1] < im.shape[0] / 2 < b[0, 3]
                       for b, im in zip(firsts, shifted)]
            row["found"][shift] = {"located": round(float(np.mean([len(b) > 0 for b in firsts])), 4),
                                   "centred": round(float(np.mean(centred)), 4)}
        for half, by_shift in views.items():
            row["invented"][half] = {shift: round(float(np.mean([len(locate_cells(v, locator, d)) > 0
                                                                 for v, d in shown])), 4)
                                     for shift, shown in by_shift.items()}
        report["thresholds"][f"{threshold:g}"] = row
        found = ", ".join(f"{s} {v['centred']:.0%}" for s, v in row["found"].items())
        print(f"threshold {threshold:g}: found and centred: {found}; views with a cell invented (even / odd): "
              f"{row['invented']['even']['none']:.1%} / {row['invented']['odd']['none']:.1%}, brown-red "
              f"{row['invented']['even']['brown_stain']:.1%} / {row['invented']['odd']['brown_stain']:.1%} "
              f"[{time.perf_counter() - started:.0f} s]", flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "locator_other_stains.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
