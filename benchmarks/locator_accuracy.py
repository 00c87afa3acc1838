"""Locator accuracy and speed against the BCCD WBC boxes.

Precision and recall at IoU >= 0.5 and recall at IoU >= 0.7, greedy one-to-one matching,
over every annotated field, and separately over the odd-positioned half of the fields
(the box-size coefficients in hv/locator.py were fitted on the even-positioned half).
Fields where the locator and the annotation disagree are listed for a look by eye:
several are annotation errors (a white cell left unannotated), which are reported here,
not tuned to.

Usage: python benchmarks/locator_accuracy.py [--bccd ../shared/data/bccd] [--out out/locator]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import iou_matrix, match_boxes, read_voc_boxes
from hv.classify import draw_cells
from hv.config import LocatorConfig
from hv.locator import locate_cells
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent


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
    config = LocatorConfig()
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
        }
        rows.append(row)
        if len(truth) and len(boxes):  # how well each found box fits its annotated cell
            ious = iou_matrix(boxes, truth)
            for j, (x1, y1, x2, y2) in enumerate(truth):
                i = int(ious[:, j].argmax())
                if ious[i, j] >= 0.3:
                    width_ratio = (boxes[i, 2] - boxes[i, 0]) / (x2 - x1)
                    at_edge = x1 <= 1 or y1 <= 1 or x2 >= image.shape[1] - 1 or y2 >= image.shape[0] - 1
                    fits.append((float(ious[i, j]), float(width_ratio), bool(at_edge)))
        if row["iou50"][1] or row["iou50"][2]:
            canvas = draw_cells(image, boxes, np.tile([[1.0, 0, 0, 0]], (len(boxes), 1)))
            for x1, y1, x2, y2 in truth.astype(int):
                cv2.rectangle(canvas, (x1, y1), (x2, y2), (0, 255, 0), 1)
            cv2.imwrite(str(out / f"{xml.stem}.disagree.png"), canvas)
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
