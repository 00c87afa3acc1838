"""Error rate of an evaluation split by whether the cell's crop window reaches past the frame.

Reads the ``predictions.csv`` that ``hv evaluate`` writes, locates the cell of each image
again, and groups images into: crop window inside the frame, window past an edge (filled
by ``locator.edge_fill``), and no cell located.

Usage: python benchmarks/errors_by_crop_edge.py EVAL_DIR [--config config.toml]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from hv.config import load_config
from hv.locator import locate_cells
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    args = parser.parse_args()
    locator = load_config(args.config).locator
    groups = {"inside": [0, 0], "past_edge": [0, 0], "not_located": [0, 0]}
    with open(Path(args.eval_dir) / "predictions.csv", newline="") as f:
        for row in csv.DictReader(f):
            image = read_image_rgb(row["path"])
            height, width = image.shape[:2]
            boxes = locate_cells(image, locator)
            if not len(boxes):
                group = "not_located"
            else:
                x1, y1, x2, y2 = boxes[0]
                half = max(locator.crop_context * locator.cell_diameter_frac * width, x2 - x1, y2 - y1) / 2
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                inside = cx - half >= 0 and cy - half >= 0 and cx + half <= width and cy + half <= height
                group = "inside" if inside else "past_edge"
            groups[group][0] += 1
            groups[group][1] += row["true"] != row["predicted"]
    result = {k: {"images": n, "errors": e, "error_rate": round(e / n, 4) if n else None}
              for k, (n, e) in groups.items()}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
