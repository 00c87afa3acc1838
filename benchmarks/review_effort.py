"""How many cells a technician must check for the differential to come near the truth.

Reads the ``slide_count.json`` that ``benchmarks/slide_count.py`` wrote for one or more draws of
the counting slide. For each run (draw and speed) the counted cells are checked in the review
page's order, least confident first, and each checked cell takes its annotated class
(``slide_count.reviewed``); the curve is the differential's distance from the truth (total
variation, points) against the number of cells checked. Marks where the page's "check" mark
(``stream.check_below``, as the run was made with) stops, and prints for each run the cells it marks, the
distance after they are checked, and the fewest cells checked, least confident first, after
which the distance stays within the 3-point target.

The BCCD fields are originals of blood-cells/TRAIN and TEST and the technician here is the
annotation itself: a real technician also errs.

Usage: python benchmarks/review_effort.py out/slide_count [out/slide_count_seed1 ...]
       [--out docs/figures/review_effort.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from slide_count import reviewed, shares, tv_points  # benchmarks/ is on sys.path when run as a script

TARGET_POINTS = 3.0  # issue #16: the differential within 3 points of the truth


def effort_curve(cells: list[list], truth_percent: dict[str, float]) -> np.ndarray:
    """Distance from the truth (points) after checking the 0, 1, ... n least confident counted cells."""
    truth = np.array(list(truth_percent.values()))
    rank = np.argsort([confidence for _, confidence, _ in cells], kind="stable")
    curve = []
    for k in range(len(cells) + 1):
        checked = np.zeros(len(cells), bool)
        checked[rank[:k]] = True
        curve.append(tv_points(truth, shares(reviewed(cells, checked.tolist()))))
    return np.array(curve)


def read_report(folder: str) -> dict:
    path = Path(folder) / "slide_count.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: give a folder that benchmarks/slide_count.py wrote (--out)")
    report = json.loads(path.read_text())
    speeds = report["speeds_px_per_frame"]
    if any("counted_cells" not in run for run in speeds.values()):
        raise SystemExit(f"{path} has no counted_cells: it was written before 2026-12-06; run slide_count.py again")
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", help="slide_count.py output folders, one per draw of the slide")
    parser.add_argument("--out", default="docs/figures/review_effort.png")
    args = parser.parse_args()
    draws = [read_report(folder) for folder in args.folders]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.4, 3.6))
    colours = plt.get_cmap("tab10")
    summary = {}
    for d, (folder, speeds) in enumerate(zip(args.folders, draws)):
        for i, (speed, run) in enumerate(speeds.items()):
            curve = effort_curve(run["counted_cells"], run["truth_percent"])
            marked = run["after_review"]["checked"]  # the least confident cells, those under the mark
            outside = np.flatnonzero(curve > TARGET_POINTS)
            enough = int(outside[-1] + 1) if len(outside) else 0  # from here on within the target
            summary[f"{folder} {speed} px/frame"] = {"cells": len(curve) - 1, "distance": float(curve[0]),
                                                     "marked_check": marked, "after_marked": float(curve[marked]),
                                                     "checked_for_target": enough}
            axis.plot(np.arange(len(curve)), curve, color=colours(d), alpha=0.6, linewidth=1,
                      label=f"draw {Path(folder).name}" if i == 0 else None)
            axis.plot([marked], [curve[marked]], marker="o", color=colours(d), markersize=4)
    axis.axhline(TARGET_POINTS, color="grey", linestyle="--", linewidth=1)
    axis.set_xlabel("cells checked on the Review page, least confident first")
    axis.set_ylabel("differential's distance\nfrom the truth (points)")
    axis.set_xlim(0, 60)
    axis.set_ylim(bottom=0)
    axis.set_title("Dots: where the review page's 'check' mark ends; dashes: the 3-point target", fontsize=9)
    axis.legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    for run, figures in summary.items():
        print(f"{run}: {figures['cells']} cells, distance {figures['distance']:.2f} points; {figures['marked_check']} "
              f"marked check, after them {figures['after_marked']:.2f}; within {TARGET_POINTS:g} points from "
              f"{figures['checked_for_target']} checked on")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
