"""How many pixels across the cells a model learnt from are: the source of ``locator.min_cell_diameter_px``.

A crop is resized to the model's input whatever the cell's size in the frame, so a cell seen at a
lower magnification reaches the model with less detail than any it learnt from, and its label is
less sure without a sign (the counting slide seen smaller: BENCHMARKS.md, "Another magnification").
This prints, for each folder, the expected white-cell diameter ``hv.locator.cell_diameter_px`` gives
every image (the scale its training or evaluation crop is cut at), as percentiles, and the share of
images under ``locator.min_cell_diameter_px``. The setting is chosen on the training folders only
(the 5th percentile of the smaller-celled source, rounded down); test folders are only reported.

Usage: python benchmarks/training_cell_sizes.py [--data ../shared/data] [--folders blood-cells/TRAIN ...]
       [--out out/training_cell_sizes.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv.config import load_config
from hv.locator import cell_diameter_px
from hv.preprocess import IMAGE_SUFFIXES, ImageReadError, read_image_rgb

REPO = Path(__file__).resolve().parent.parent
PERCENTILES = (1, 5, 25, 50, 75, 95, 99)


def diameters(folder: Path, config) -> tuple[np.ndarray, int]:
    """The expected cell diameter (px) of every readable image under ``folder``, and how many were unreadable."""
    found, unreadable = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            image = read_image_rgb(str(path))
        except ImageReadError:
            unreadable += 1
            continue
        found.append(cell_diameter_px(image, config.locator))
    return np.array(found, np.float64), unreadable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--folders", nargs="+",
                        default=["blood-cells/TRAIN", "pbc/TRAIN", "blood-cells/TEST", "pbc/TEST"])
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--out", default=str(REPO / "out" / "training_cell_sizes.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    threshold = config.locator.min_cell_diameter_px
    result = {"percentiles": list(PERCENTILES), "min_cell_diameter_px": threshold, "folders": {}}
    for name in args.folders:
        values, unreadable = diameters(Path(args.data) / name, config)
        if not values.size:
            raise SystemExit(f"{Path(args.data) / name}: no readable image (is --data the folder that holds {name}?)")
        row = {"images": int(values.size), "unreadable": unreadable,
               "diameter_px": np.percentile(values, PERCENTILES).round(1).tolist(),
               "share_below_min": round(float(np.mean(values < threshold)), 4)}
        result["folders"][name] = row
        print(f"{name}: {row}", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
