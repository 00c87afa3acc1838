"""Seeds of one recipe side by side: per test source, each seed's figures, their mean and spread.

Reads the ``metrics.json`` of each source folder under each evaluation folder that
``hv evaluate`` wrote (one evaluation folder per seed), and prints one table per source:
top-1, macro-F1, eosinophil and monocyte recall, the share of four-class cells flagged
"other", and for a folder of cells outside the four the share flagged. Mean and sample
standard deviation over the seeds; the spread says how much of a difference between
recipes one seed could show by chance. Writes the same as JSON with ``--json``.

Usage: python benchmarks/seed_figures.py out/two_labs/seed0_test out/two_labs/seed1_test ... [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

FIGURES = ("top-1", "macro-F1", "eosinophil recall", "monocyte recall", "four-class flagged other")


def figures(metrics: dict) -> dict[str, float]:
    if "per_class" not in metrics:  # a folder of cells outside the four only
        return {"flagged other": metrics["other"]["flagged_share"]}
    per_class = metrics["per_class"]
    found = {"top-1": metrics["accuracy"], "macro-F1": metrics["macro_f1"],
             "four-class flagged other": metrics.get("flagged_share") or 0.0}
    for name in ("eosinophil", "monocyte"):  # a class with no cell in the set has no recall (not 0)
        if per_class[name]["support"]:
            found[f"{name} recall"] = per_class[name]["recall"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seeds: dict[str, list[dict[str, float]]] = {}  # per source, each seed's figures
    for evaluation in args.evaluations:
        for path in sorted(evaluation.glob("*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("per_class") and not any(c.get("support") for c in metrics["per_class"].values()):
                metrics = {"other": metrics["other"]}
            seeds.setdefault(path.parent.name, []).append(figures(metrics))
    report = {}
    for source, found in seeds.items():
        print(f"\n{source} ({len(found)} seeds)")
        report[source] = {}
        names = [n for n in (*FIGURES, "flagged other") if any(n in f for f in found)]
        for name in names:
            values = [f.get(name) for f in found]  # None ("-"): that seed's set holds no cell of the class
            present = [v for v in values if v is not None]
            spread = statistics.stdev(present) if len(present) > 1 else 0.0
            report[source][name] = {"seeds": values, "mean": statistics.fmean(present), "sd": spread}
            cells = "  ".join(f"{v:.4f}" if v is not None else "   -  " for v in values)
            print(f"  {name:26s} {cells}   mean {statistics.fmean(present):.4f} ± {spread:.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
