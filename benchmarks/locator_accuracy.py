"""Locator accuracy and speed against the BCCD WBC boxes.

Precision and recall at IoU >= 0.5 and recall at IoU >= 0.7, greedy one-to-one matching,
over every annotated field, and separately over the odd-positioned half of the fields
(the box-size coefficients in hv/locator.py were fitted on the even-positioned half).
Fields where the locator and the annotation disagree are listed for a look by eye:
several are annotation errors (a white cell left unannotated), which are reported here,
not tuned to.

Also: for whole cells, how far the annotated box reaches beyond the located one, in
expected cell diameters, against the stream's ``edge_margin_frac`` (a cell reaching further
than the margin could be classified while the frame edge cuts it).

And how far two distinct cells of one field lie inside each other's box (the largest share of the
smaller box inside the other, over annotated pairs and over located pairs): the stream's tracker takes a
box lying ``stream.track_part_of_cell`` inside a cell's box for a part of that cell.

And views that cut a white cell, as a moving slide shows many: the fields with one annotated white
cell, tiled whole as the counting benchmark's slide of whole fields (``slide_count.py --tile 640 480``),
and 640 x 480 views placed so that one view edge leaves 25, 50 or 75 % of the cell's box inside, on
each side. Each view is located at its own field's measured scale (the stream's running scale is
steady), so only the locator's blob rules are read: boxes whose centre lies in an annotated platelet
(BCCD annotates them), boxes on no annotated object, and the annotated white cells whole in the view
that are found.

Usage: python benchmarks/locator_accuracy.py [--bccd ../shared/data/bccd] [--out out/locator]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import inside_share, iou_matrix, match_boxes, points_in_boxes, read_voc_boxes
from hv.config import load_config
from hv.field_images import draw_cells
from hv.locator import cell_diameter_px, locate_cells
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent


def touches_edge(box: np.ndarray, shape: tuple[int, ...]) -> bool:
    return bool(box[0] <= 1 or box[1] <= 1 or box[2] >= shape[1] - 1 or box[3] >= shape[0] - 1)


def overhang(located: np.ndarray, annotated: np.ndarray) -> float:
    """How far the annotated box reaches beyond the located one on its worst side, in pixels (< 0: inside)."""
    return float(max(located[0] - annotated[0], located[1] - annotated[1],
                     annotated[2] - located[2], annotated[3] - located[3]))


def largest_overlap_of_smaller(boxes: np.ndarray) -> float:
    """Over the pairs of boxes, the largest share of the smaller box that lies inside the other (0 for one box)."""
    if len(boxes) < 2:
        return 0.0
    share = np.maximum(inside_share(boxes, boxes), inside_share(boxes, boxes).T)
    np.fill_diagonal(share, 0.0)
    return float(share.max())


def cut_views(bccd: Path, config, size: tuple[int, int] = (640, 480)) -> dict:
    """Boxes located in views that cut a white cell, by what they lie on (module docstring), per half of the fields."""
    xmls = sorted(Path(bccd, "Annotations").glob("*.xml"))
    fields = [(position, xml) for position, xml in enumerate(xmls) if len(read_voc_boxes(xml)) == 1]
    columns = int(np.ceil(np.sqrt(len(fields))))
    width, height = size
    mosaic = np.zeros((int(np.ceil(len(fields) / columns)) * height, columns * width, 3), np.uint8)
    white, platelets, diameters = [], [], []  # mosaic boxes; white: (box, field index)
    for k, (_, xml) in enumerate(fields):
        image = read_image_rgb(str(Path(bccd, "JPEGImages", xml.stem + ".jpg")))
        top, left = (k // columns) * height, (k % columns) * width
        mosaic[top:top + height, left:left + width] = cv2.resize(image, size)
        diameters.append(cell_diameter_px(image, config))
        shift = np.array([left, top, left, top], np.float32)
        white.append((read_voc_boxes(xml)[0] + shift, k))
        platelets += list(read_voc_boxes(xml, "Platelets") + shift)
    white_boxes = np.array([box for box, _ in white])
    platelets = np.array(platelets, np.float32).reshape(-1, 4)
    result = {half: {"views": 0, "on_a_platelet": 0, "on_nothing_annotated": 0, "whole_cells": 0, "whole_found": 0}
              for half in ("even", "odd")}
    for box, k in white:
        x1, y1, x2, y2 = box
        half = result["even" if fields[k][0] % 2 == 0 else "odd"]
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        for inside in (0.25, 0.5, 0.75):
            corners = ((x2 - inside * (x2 - x1), cy - height / 2), (x1 + inside * (x2 - x1) - width, cy - height / 2),
                       (cx - width / 2, y2 - inside * (y2 - y1)), (cx - width / 2, y1 + inside * (y2 - y1) - height))
            for vx, vy in corners:  # the view's left, right, top or bottom edge cuts the cell
                vx, vy = int(round(vx)), int(round(vy))
                if vx < 0 or vy < 0 or vx + width > mosaic.shape[1] or vy + height > mosaic.shape[0]:
                    continue
                shown = np.ascontiguousarray(mosaic[vy:vy + height, vx:vx + width])
                if not shown.any(axis=2).all():  # the ragged last row's empty places
                    continue
                located = locate_cells(shown, config, diameters[k]) + np.array([vx, vy, vx, vy], np.float32)
                half["views"] += 1
                centres = (located[:, :2] + located[:, 2:]) / 2
                on_white = points_in_boxes(centres, white_boxes)
                on_platelet = points_in_boxes(centres, platelets) & ~on_white
                half["on_a_platelet"] += int(on_platelet.sum())
                half["on_nothing_annotated"] += int((~on_white & ~on_platelet).sum())
                view = np.array([vx, vy, vx + width, vy + height])
                in_view = (white_boxes[:, :2] >= view[:2]).all(axis=1) & (white_boxes[:, 2:] <= view[2:]).all(axis=1)
                whole = white_boxes[in_view]
                half["whole_cells"] += len(whole)
                half["whole_found"] += match_boxes(located, whole, 0.5)[0] if len(whole) else 0
    return result


def score(rows: list[dict]) -> dict:
    tp5, fp5, fn5 = (sum(r["iou50"][k] for r in rows) for k in range(3))
    tp7 = sum(r["iou70"][0] for r in rows)
    truth = tp5 + fn5
    return {
        "fields": len(rows),
        "true_boxes": truth,
        "predicted_boxes": tp5 + fp5,
        "precision@0.5": round(tp5 / max(tp5 + fp5, 1), 4),
        "recall@0.5": round(tp5 / max(truth, 1), 4),
        "recall@0.7": round(tp7 / max(truth, 1), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--out", default=str(REPO / "out" / "locator"))
    args = parser.parse_args()
    settings = load_config(REPO / "config.toml")  # the shipped locator settings and the stream's edge margin
    config = settings.locator
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    xmls = sorted(Path(args.bccd, "Annotations").glob("*.xml"))
    rows, times_ms, fits = [], [], []
    for position, xml in enumerate(xmls):
        image = read_image_rgb(str(Path(args.bccd, "JPEGImages", xml.stem + ".jpg")))
        truth = read_voc_boxes(xml)
        locate_cells(image, config)  # warm caches so the timing is of the steady state
        start = time.perf_counter()
        boxes = locate_cells(image, config)
        times_ms.append((time.perf_counter() - start) * 1000)
        row = {
            "field": xml.stem,
            "held_out": position % 2 == 1,
            "truth": len(truth),
            "found": len(boxes),
            "iou50": match_boxes(boxes, truth, 0.5),
            "iou70": match_boxes(boxes, truth, 0.7),
            "pair_overlap": (largest_overlap_of_smaller(truth), largest_overlap_of_smaller(boxes)),
        }
        rows.append(row)
        if len(truth) and len(boxes):  # how well each found box fits its annotated cell
            ious = iou_matrix(boxes, truth)
            diameter = cell_diameter_px(image, config)
            for j, annotated in enumerate(truth):
                i = int(ious[:, j].argmax())
                if ious[i, j] >= 0.3:
                    width_ratio = (boxes[i, 2] - boxes[i, 0]) / (annotated[2] - annotated[0])
                    cut = touches_edge(annotated, image.shape)
                    fits.append((float(ious[i, j]), float(width_ratio), cut,
                                 cut or touches_edge(boxes[i], image.shape), overhang(boxes[i], annotated) / diameter))
        if row["iou50"][1] or row["iou50"][2]:
            canvas = draw_cells(image, boxes, np.tile([[1.0, 0, 0, 0]], (len(boxes), 1)))
            for x1, y1, x2, y2 in truth.astype(int):
                cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), 1)
            cv2.imwrite(str(out / f"{xml.stem}.disagree.png"), canvas)
    # The stream classifies a cell only while its located box keeps edge_margin_frac diameters
    # from the frame edge; a cell whose outline reaches further beyond its box than that could
    # be cut while its box looks whole. How often is that?
    margin = settings.stream.edge_margin_frac
    whole_overhangs = np.array([f[4] for f in fits if not f[3]])
    result = {
        "all": score(rows),
        "held_out_half": score([r for r in rows if r["held_out"]]),
        "ms_per_frame_median": round(float(np.median(times_ms)), 2),
        "ms_per_frame_p95": round(float(np.percentile(times_ms, 95)), 2),
        "box_fit": {
            "width_ratio_p10_p50_p90": [round(float(v), 3) for v in np.percentile([f[1] for f in fits], [10, 50, 90])],
            "matched_boxes_under_iou_0.7": sum(f[0] < 0.7 for f in fits),
            "of_which_cut_by_the_frame_edge": sum(f[0] < 0.7 and f[2] for f in fits),
        },
        "edge_margin_check": {  # whole cells only: a cell the field cuts has no true outline to reach
            "cells": len(whole_overhangs),
            "overhang_in_diameters_p50_p95_max": [round(float(v), 3) for v in
                                                  np.percentile(whole_overhangs, [50, 95, 100])],
            f"share_beyond_edge_margin_{margin:g}": round(float(np.mean(whole_overhangs > margin)), 4),
        },
        # Two distinct cells side by side: the tracker's part_of_cell must stay above these.
        "nearest_pairs": {
            "annotated_pairs_fields": sum(r["truth"] >= 2 for r in rows),
            "annotated_largest_overlap_of_smaller": max((r["pair_overlap"][0], r["field"]) for r in rows),
            "located_largest_overlap_of_smaller": max((r["pair_overlap"][1], r["field"]) for r in rows),
        },
        "views_cutting_a_white_cell": cut_views(Path(args.bccd), config),
        "disagreements": [
            {k: r[k] for k in ("field", "truth", "found")} | {"matched@0.5": r["iou50"][0]}
            for r in rows
            if r["iou50"][1] or r["iou50"][2]
        ],
    }
    (out / "locator.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "disagreements"}, indent=2))
    print(f"{len(result['disagreements'])} fields disagree; pictures (green = annotation) in {out}")


if __name__ == "__main__":
    main()
