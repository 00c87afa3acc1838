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


def figures(metrics: dict) -> dict[str, float]:
    if "per_class" not in metrics:  # a folder of cells outside the four only
        return {"flagged other": metrics["other"]["flagged_share"]}
    per_class = metrics["per_class"]
    return {"top-1": metrics["accuracy"], "macro-F1": metrics["macro_f1"],
            "eosinophil recall": per_class["eosinophil"]["recall"], "monocyte recall": per_class["monocyte"]["recall"],
            "four-class flagged other": metrics.get("flagged_share") or 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evaluations", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    table: dict[str, dict[str, list[float]]] = {}
    for evaluation in args.evaluations:
        for path in sorted(evaluation.glob("*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics.get("per_class") and not any(c.get("support") for c in metrics["per_class"].values()):
                metrics = {"other": metrics["other"]}
            for name, value in figures(metrics).items():
                table.setdefault(path.parent.name, {}).setdefault(name, []).append(value)
    report = {}
    for source, rows in table.items():
        print(f"\n{source} ({len(next(iter(rows.values())))} seeds)")
        report[source] = {}
        for name, values in rows.items():
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            report[source][name] = {"seeds": values, "mean": statistics.fmean(values), "sd": spread}
            cells = "  ".join(f"{v:.4f}" for v in values)
            print(f"  {name:26s} {cells}   mean {statistics.fmean(values):.4f} ± {spread:.4f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
