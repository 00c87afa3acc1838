"""How large each lab's white cells look in the classifier's crop, per class.

The crop is cut at the expected cell diameter that ``cell_diameter_px`` estimates per image
(red cells, then the nucleus bounds), so a cell's apparent size in the crop is its located
box (sqrt(w*h)) over that estimate. If two labs' ratios agree per class, the scale is found
alike in both; if one lab's spread is wider, a model taught at the other's spread (its
``augment.zoom``) meets cells that look larger or smaller than any it learnt. The cell is
the one the classifier sees (``hv.preprocess.field_view``: the largest located cell).

Usage: python benchmarks/cell_size_spread.py [--folders ../shared/data/blood-cells/TRAIN ../shared/data/pbc/TRAIN]
       [--per-class 100] [--seed 0] [--out out/cell_size_spread.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scale_accuracy import draw  # benchmarks/ is on sys.path when run as a script

from hv.config import load_config
from hv.labels import OUTPUT_NAMES, class_index
from hv.locator import cell_diameter_px, locate_cells
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent


def draw_by_class(folder: Path, per_class: int, seed: int) -> dict[str, list[Path]]:
    """``scale_accuracy.draw``'s files, grouped by class (output name, or the folder's own for unknown ones)."""
    drawn: dict[str, list[Path]] = {}
    for path in draw(folder, per_class, seed):
        index = class_index(path.parent.name, other=True)
        drawn.setdefault(OUTPUT_NAMES[index] if index is not None else path.parent.name, []).append(path)
    return drawn


def apparent_size(path: Path, locator) -> float | None:
    """The largest located cell's sqrt(w*h) over the expected diameter; None if no cell is located."""
    image = read_image_rgb(str(path))
    diameter = cell_diameter_px(image, locator)
    boxes = locate_cells(image, locator, diameter)
    if not len(boxes):
        return None
    x0, y0, x1, y1 = boxes[0]
    return float(np.sqrt((x1 - x0) * (y1 - y0)) / diameter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", type=Path,
                        default=[REPO / "../shared/data/blood-cells/TRAIN", REPO / "../shared/data/pbc/TRAIN"])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", type=Path, default=REPO / "config.toml")
    parser.add_argument("--out", type=Path, default=REPO / "out/cell_size_spread.json")
    args = parser.parse_args()
    locator = load_config(args.config).locator
    report = {}
    print("folder, class: cells located / drawn, apparent size 10th / 50th / 90th percentile, 90th / 10th")
    for folder in args.folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not a folder of class folders")
        rows = {}
        for name, files in draw_by_class(folder, args.per_class, args.seed).items():
            sizes = np.array([s for s in (apparent_size(f, locator) for f in files) if s is not None])
            p10, p50, p90 = np.percentile(sizes, [10, 50, 90]) if sizes.size else (np.nan,) * 3
            rows[name] = {"drawn": len(files), "located": int(sizes.size), "p10": round(float(p10), 3),
                          "median": round(float(p50), 3), "p90": round(float(p90), 3)}
            print(f"{folder.parent.name}/{folder.name}, {name}: {sizes.size} / {len(files)}, "
                  f"{p10:.2f} / {p50:.2f} / {p90:.2f}, {p90 / p10:.2f}")
        report[str(folder)] = rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"per_class": args.per_class, "seed": args.seed, "folders": report}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
