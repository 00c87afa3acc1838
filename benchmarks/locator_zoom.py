"""The locator and the cell scale at another magnification: BCCD fields zoomed in 1-3x.

A camera behind another relay lens (a 1x C-mount adapter where BCCD's had 0.5x, say) or another
objective sees the same smear larger. Each BCCD field's centre (1 / zoom of it each way) is enlarged
back to 640 x 480 (bicubic), its annotated boxes with it, and located with the shipped settings
("auto" scale: ``hv.locator.cell_diameter_px``, one frame alone, as ``hv classify`` does). Reported per
zoom, over every 4th field (from the second; 67 fields):

- recall at IoU 0.5 of the annotated white cells the view shows whole;
- located boxes whose centre lies on no annotated white cell (whole or cut by the view), and how many of
  those lie on an annotated platelet;
- the red-cell ruler (``hv.scale.red_cell_diameter_px``): the share of views it cannot measure (then the
  expected diameter falls back to ``locator.fallback_diameter_frac`` of the width, which does not grow with
  the zoom), and its reading in the field's own pixels (divided by the zoom; 1x reads about 88);
- the expected white-cell diameter over the annotated box (whole cells; 1.0 is right).

Usage: python benchmarks/locator_zoom.py [--bccd ../shared/data/bccd] [--zooms 1 1.5 2 2.5 3] [--out F]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import match_boxes, points_in_boxes, read_voc_boxes
from hv.config import load_config
from hv.locator import cell_diameter_px, locate_cells
from hv.preprocess import read_image_rgb
from hv.scale import red_cell_diameter_px

REPO = Path(__file__).resolve().parent.parent


def zoomed(image: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """The field's centre enlarged ``zoom`` times to the field's size, and the offset that maps boxes into it."""
    height, width = image.shape[:2]
    crop_w, crop_h = int(width / zoom), int(height / zoom)
    x0, y0 = (width - crop_w) // 2, (height - crop_h) // 2
    view = cv2.resize(image[y0:y0 + crop_h, x0:x0 + crop_w], (width, height), interpolation=cv2.INTER_CUBIC)
    return view, np.array([x0, y0, x0, y0], np.float32)


def at_zoom(xmls: list[Path], bccd: Path, zoom: float, config) -> dict:
    found = missed = off = on_platelet = unmeasured = 0
    ruler, fits = [], []
    for xml in xmls:
        image = read_image_rgb(str(bccd / "JPEGImages" / f"{xml.stem}.jpg"))
        view, offset = zoomed(image, zoom)
        height, width = view.shape[:2]
        cells = (read_voc_boxes(xml) - offset) * zoom
        platelets = (read_voc_boxes(xml, "Platelets") - offset) * zoom
        whole = cells[(cells[:, :2] >= 0).all(axis=1) & (cells[:, 2] <= width) & (cells[:, 3] <= height)]
        diameter = cell_diameter_px(view, config.locator)
        located = locate_cells(view, config.locator, diameter)
        tp, _, fn = match_boxes(located, whole, 0.5)
        found, missed = found + tp, missed + fn
        centres = (located[:, :2] + located[:, 2:]) / 2
        stray = ~points_in_boxes(centres, cells)
        off += int(stray.sum())
        on_platelet += int((stray & points_in_boxes(centres, platelets)).sum())
        red = red_cell_diameter_px(view, config.locator.work_width_px)
        unmeasured += red is None
        if red is not None:
            ruler.append(red / zoom)
        fits += [diameter / float(np.sqrt((b[2] - b[0]) * (b[3] - b[1]))) for b in whole]

    def spread(values: list[float]) -> list[float]:
        return np.percentile(values, [10, 50, 90]).round(2).tolist() if values else []

    return {"zoom": zoom, "views": len(xmls), "whole_cells": found + missed,
            "recall@0.5": round(found / max(found + missed, 1), 3),
            "boxes_on_no_white_cell": off, "of_which_on_a_platelet": on_platelet,
            "no_red_cell_reading": round(unmeasured / len(xmls), 2),
            "red_cell_px_in_field_pixels_p10_p50_p90": spread(ruler),
            "expected_over_annotated_p10_p50_p90": spread(fits)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--zooms", type=float, nargs="+", default=[1.0, 1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--out", default=str(REPO / "out" / "locator_zoom.json"))
    args = parser.parse_args()
    config = load_config(REPO / "config.toml")
    bccd = Path(args.bccd)
    xmls = sorted((bccd / "Annotations").glob("*.xml"))[1::4]
    rows = []
    for zoom in args.zooms:
        rows.append(at_zoom(xmls, bccd, zoom, config))
        print(json.dumps(rows[-1]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
