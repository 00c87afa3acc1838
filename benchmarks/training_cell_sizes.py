"""How many pixels across the cells a model learnt from are: the source of ``locator.min_cell_diameter_px``.

A crop is resized to the model's input whatever the cell's size in the frame, so a cell seen at a
lower magnification reaches the model with less detail than any it learnt from, and its label is
less sure without a sign (the counting slide seen smaller: BENCHMARKS.md, "A lower magnification").
This prints, for each folder, the expected white-cell diameter ``hv.locator.cell_diameter_px`` gives
every image (the scale its training or evaluation crop is cut at), as percentiles, and the share of
images under ``locator.min_cell_diameter_px``. The setting is chosen on the training folders only
(the 5th percentile of the smaller-celled source, rounded down); test folders are only reported.

``--predictions F ...`` (``hv evaluate``'s predictions.csv, e.g. the held-out folds' of blood-cells/TRAIN)
instead scores those predictions apart for the images under each bar and the others (the stream's,
``locator.min_cell_diameter_px``, and a still image's, ``hv.locator.ONE_FIELD_SPREAD`` of it): does the
note single out images whose labels are less sure?

Usage: python benchmarks/training_cell_sizes.py [--data ../shared/data] [--folders blood-cells/TRAIN ...]
       [--predictions benchmarks/results/held_out_folds_paired56/*/blood-cells_TRAIN/predictions.csv.gz]
       [--out out/training_cell_sizes.json]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from pathlib import Path

import numpy as np

from hv.config import load_config
from hv.locator import ONE_FIELD_SPREAD, cell_diameter_px
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


def in_data(path: str, data: Path) -> Path:
    """A path written on another machine, found under ``data`` by its tail (``blood-cells/TRAIN/...``)."""
    parts = Path(path).parts
    for i in range(len(parts)):
        if (data / Path(*parts[i:])).is_file():
            return data / Path(*parts[i:])
    raise SystemExit(f"{path}: not found under {data} (is --data the folder that holds the data sets?)")


def by_size(prediction_files: list[str], data: Path, config) -> dict:
    """Top-1 accuracy of the listed predictions for images under each bar and the others: the stream's
    (``locator.min_cell_diameter_px``, for its running scale) and a still image's (``ONE_FIELD_SPREAD`` of it)."""
    rows = []
    for name in prediction_files:  # plain or gzipped, as benchmarks/results/ keeps them
        with (gzip.open(name, "rt", newline="") if name.endswith(".gz") else open(name, newline="")) as f:
            rows += list(csv.DictReader(f))
    sizes = np.array([cell_diameter_px(read_image_rgb(str(in_data(row["path"], data))), config.locator)
                      for row in rows])
    correct = np.array([row["true"] == row["predicted"] for row in rows])
    result = {"files": prediction_files, "images": len(rows)}
    for name, bar in (("stream_bar", config.locator.min_cell_diameter_px),
                      ("one_field_bar", ONE_FIELD_SPREAD * config.locator.min_cell_diameter_px)):
        under = sizes < bar
        result[name] = {"px": bar, **{side: {"images": int(chosen.sum()),
                                             "accuracy": round(float(correct[chosen].mean()), 4) if chosen.any()
                                             else None}
                                      for side, chosen in (("under", under), ("at_or_over", ~under))}}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--folders", nargs="+",
                        default=["blood-cells/TRAIN", "pbc/TRAIN", "blood-cells/TEST", "pbc/TEST"])
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--predictions", nargs="+", help="hv evaluate's predictions.csv files to score by cell size")
    parser.add_argument("--out", default=str(REPO / "out" / "training_cell_sizes.json"))
    args = parser.parse_args()
    config = load_config(args.config)
    if args.predictions:
        result = by_size(args.predictions, Path(args.data), config)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        return
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
