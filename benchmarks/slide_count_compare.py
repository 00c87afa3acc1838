"""Two models on the same counting slides: the differential's distance from the truth at each speed.

Reads the ``slide_count.json`` that ``benchmarks/slide_count.py`` wrote for each model and each
draw of the slide (``--seed``), and draws one panel per draw: the total-variation distance of
the counted differential from the truth (points) against the scan speed, one line per model,
with the 3-point target. Prints the same figures and each model's eosinophil share, since the
eosinophil/neutrophil boundary is what moves the differential between models.

Usage: python benchmarks/slide_count_compare.py --first NAME DIR [DIR ...] --second NAME DIR [DIR ...]
       [--out docs/figures/slide_count_compare.png]
(the DIRs of both models in the same order of draws)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGET_POINTS = 3.0  # issue #16: the differential within 3 points of the truth


def read_runs(folder: str) -> dict:
    """speed -> that speed's figures, from one slide_count.json."""
    path = Path(folder) / "slide_count.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: give a folder that benchmarks/slide_count.py wrote (--out)")
    return json.loads(path.read_text())["speeds_px_per_frame"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", nargs="+", required=True, metavar="NAME_THEN_DIRS")
    parser.add_argument("--second", nargs="+", required=True, metavar="NAME_THEN_DIRS")
    parser.add_argument("--out", default="docs/figures/slide_count_compare.png")
    args = parser.parse_args()
    models = {spec[0]: [read_runs(d) for d in spec[1:]] for spec in (args.first, args.second)}
    draws = {len(runs) for runs in models.values()}
    if len(draws) != 1 or 0 in draws:
        raise SystemExit("give both models the same number of slide_count folders (one per draw), in one order")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = draws.pop()
    fig, axes = plt.subplots(1, count, figsize=(3.6 * count, 3.2), sharey=True, squeeze=False)
    for draw, axis in enumerate(axes[0]):
        for name, runs in models.items():
            speeds = list(runs[draw])
            distance = [runs[draw][s]["differential_tv_points"] for s in speeds]
            eosinophils = [runs[draw][s]["percent"]["eosinophil"] for s in speeds]
            truth = runs[draw][speeds[0]]["truth_percent"]["eosinophil"]
            axis.plot([float(s) for s in speeds], distance, marker="o", label=name)
            print(f"draw {draw}, {name}: distance {' / '.join(f'{d:.2f}' for d in distance)} points; "
                  f"eosinophils {' / '.join(f'{e:.1f}' for e in eosinophils)} % (truth {truth:.1f} %)")
        axis.axhline(TARGET_POINTS, color="grey", linestyle="--", linewidth=1)
        axis.set_ylim(bottom=0)
        axis.set_title(f"slide draw {draw}")
        axis.set_xlabel("scan speed (px per frame)")
    axes[0][0].set_ylabel("differential vs truth (TV, points)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
