"""Cell scale measured from red cells (hv/scale.py): the ratio it is calibrated with, and its error.

1. Calibration (TRAIN only): ``red_cell_ratio`` is the median, over a class-stratified draw
   of blood-cells/TRAIN images, of 0.28 x width (the hand-set white-cell diameter the
   bundled model was trained with) / the measured red-cell diameter. With it, "auto" crops
   blood-cells/ fields as the fixed setting did, on average.
2. Error against the BCCD boxes: measured red-cell diameter / the median annotated red-cell
   box (sqrt(w*h), boxes cut by the frame edge left out), and the expected white-cell
   diameter (``hv.locator.cell_diameter_px``: red cells, then the nucleus bounds) / the
   annotated white-cell box, per cell.
3. Another lab (pbc/TRAIN, a draw): the expected white-cell diameter as a share of the
   width, against the 0.43 the locator's boxes give there (data README), and its spread.

Usage: python benchmarks/scale_accuracy.py [--data ../shared/data] [--per-class 100] [--out out/scale]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hv.annotations import read_voc_boxes
from hv.config import LocatorConfig
from hv.locator import cell_diameter_px
from hv.preprocess import read_image_rgb
from hv.scale import red_cell_diameter_px

REPO = Path(__file__).resolve().parent.parent
HAND_SET_FRAC = 0.28


def draw(folder: Path, per_class: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(class_dir.glob("*"))
        paths += [files[i] for i in rng.choice(len(files), min(per_class, len(files)), replace=False)]
    return paths


def spread(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    p10, p25, p50, p75, p90 = np.percentile(values, [10, 25, 50, 75, 90])
    return {"n": int(values.size), "median": round(p50, 4), "p25": round(p25, 4), "p75": round(p75, 4),
            "p10": round(p10, 4), "p90": round(p90, 4)}


def inner_sides(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """sqrt(w*h) of the boxes that the frame edge does not cut."""
    inside = (boxes[:, 0] > 2) & (boxes[:, 1] > 2) & (boxes[:, 2] < width - 2) & (boxes[:, 3] < height - 2)
    boxes = boxes[inside]
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--out", default=str(REPO / "out" / "scale"))
    args = parser.parse_args()
    data = Path(args.data)
    config = LocatorConfig()
    result: dict = {"config": {"red_cell_ratio": config.red_cell_ratio,
                               "fallback_diameter_frac": config.fallback_diameter_frac}}

    # 1. Calibration on blood-cells/TRAIN.
    ratios, failed = [], 0
    for path in draw(data / "blood-cells" / "TRAIN", args.per_class):
        image = read_image_rgb(str(path))
        red = red_cell_diameter_px(image, config.work_width_px)
        if red is None:
            failed += 1
            continue
        ratios.append(HAND_SET_FRAC * image.shape[1] / red)
    result["calibration_blood_cells_train"] = {"red_cell_ratio": spread(np.array(ratios)), "no_estimate": failed}

    # 2. BCCD boxes.
    red_err, white_err, times_ms, failed = [], [], [], 0
    for xml in sorted((data / "bccd" / "Annotations").glob("*.xml")):
        image = read_image_rgb(str(data / "bccd" / "JPEGImages" / f"{xml.stem}.jpg"))
        height, width = image.shape[:2]
        start = time.perf_counter()
        red = red_cell_diameter_px(image, config.work_width_px)
        times_ms.append((time.perf_counter() - start) * 1000)
        if red is None:
            failed += 1
            continue
        red_true = inner_sides(read_voc_boxes(xml, "RBC"), width, height)
        white_true = inner_sides(read_voc_boxes(xml, "WBC"), width, height)
        if len(red_true) >= 3:
            red_err.append(red / np.median(red_true))
        white_err += list(cell_diameter_px(image, config) / white_true)
    result["bccd"] = {
        "fields": len(times_ms), "no_estimate": failed,
        "red_cell_measured_over_annotated": spread(np.array(red_err)),
        "white_cell_expected_over_annotated": spread(np.array(white_err)),
        "ms_per_field_median": round(float(np.median(times_ms)), 2),
    }

    # 3. Another lab.
    fracs = []
    for path in draw(data / "pbc" / "TRAIN", args.per_class):
        image = read_image_rgb(str(path))
        fracs.append(cell_diameter_px(image, config) / image.shape[1])
    result["pbc_train_expected_diameter_frac"] = spread(np.array(fracs))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scale_accuracy.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
