"""How steady the stream's cell scale is along a scanned slide, for several running-median windows.

The slide and scan are the counting benchmark's (``slide_count.py``: BCCD fields tiled, a
serpentine scan with jitter and defect frames, ``--seed`` draws the fields and the path). Every
``--every``-th frame is measured as the stream measures it (``hv.locator.cell_diameter_px``:
red cells, the nucleus bounds, the fallback where no red cell is measurable). All fields are
BCCD's, one magnification, so a steady estimate is the goal: for each window (in
measurements) the share of frames whose running median lies within +-10 % of the median of all
measured (not fallback) frames, and its 5th / 50th / 95th percentiles; once with every
measurement voting (the stream's rule), once with the fallback frames left out.

Usage: python benchmarks/stream_scale.py [--speeds 4 24] [--seed 1] [--windows 9 30 60 90]
       [--out out/stream_scale.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
from slide_count import BCCD, REPO, choose_fields, scan_scope  # benchmarks/ is on sys.path as a script

from hv.config import load_config
from hv.locator import cell_diameter_px
from hv.scale import red_cell_diameter_px


def measure_scan(bccd: Path, speed: float, seed: int, every: int, config) -> tuple[np.ndarray, np.ndarray]:
    """(diameters, measured): the stream's estimate on every ``every``-th frame, and whether red cells gave it."""
    scope = scan_scope(bccd, choose_fields(bccd, 100, (320, 240), seed), speed, seed)
    diameters, measured = [], []
    for index in range(0, scope.frame_count, every):
        image = cv2.cvtColor(scope.render(index), cv2.COLOR_BGR2RGB)
        diameters.append(cell_diameter_px(image, config.locator))
        measured.append(red_cell_diameter_px(image, config.locator.work_width_px) is not None)
    return np.array(diameters), np.array(measured)


def running_medians(diameters: np.ndarray, measured: np.ndarray, window: int, measured_only: bool) -> np.ndarray:
    out = []
    for k in range(len(diameters)):
        recent = slice(max(0, k - window + 1), k + 1)
        values = diameters[recent]
        if measured_only and measured[recent].any():
            values = values[measured[recent]]
        out.append(np.median(values))
    return np.array(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bccd", default=str(BCCD))
    parser.add_argument("--speeds", type=float, nargs="+", default=[4, 24])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=int, default=10, help="measure one frame in this many (stream.scale_every)")
    parser.add_argument("--windows", type=int, nargs="+", default=[9, 30, 60, 90])
    parser.add_argument("--out", default=str(REPO / "out" / "stream_scale.json"))
    args = parser.parse_args()
    if min(args.windows) < 1 or args.every < 1:
        parser.error("--windows and --every must be 1 or more")
    config = load_config(REPO / "config.toml")
    report = {"seed": args.seed, "every": args.every, "speeds_px_per_frame": {}}
    for speed in args.speeds:
        diameters, measured = measure_scan(Path(args.bccd), speed, args.seed, args.every, config)
        reference = float(np.median(diameters[measured]))
        row = {"measurements": len(diameters), "fallback_share": round(float(1 - measured.mean()), 3),
               "reference_px": round(reference, 1),
               "single_p5_p50_p95": np.percentile(diameters[measured], [5, 50, 95]).round(1).tolist(),
               "windows": {}}
        for window in args.windows:
            for measured_only in (False, True):
                medians = running_medians(diameters, measured, window, measured_only)
                row["windows"][f"{window}{' measured only' if measured_only else ''}"] = {
                    "within_10pct": round(float(np.mean(np.abs(medians / reference - 1) <= 0.1)), 3),
                    "p5_p50_p95": np.percentile(medians, [5, 50, 95]).round(1).tolist()}
        report["speeds_px_per_frame"][f"{speed:g}"] = row
        print(json.dumps({f"{speed:g} px/frame": row}), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
