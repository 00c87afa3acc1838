"""When to flag a cell "other": the trade between the four-class cells flagged and the other cells caught.

Today a cell is "other" when that output is the largest of the five. A threshold instead
("other" when its probability reaches t, else the largest of the four) moves two targets of
issue #15 against each other: pbc/ top-1 (four-class cells flagged count as errors) and the
share of pbc/OTHER flagged. This reads the ``predictions.csv`` (with every output's
probability) of validation evaluations, pools them (the folds of a cross-validation:
``hv evaluate --held-out`` of each ``hv train --fold I/K`` model), and for each threshold
reports per source the four-class accuracy, the share of four-class cells flagged and, for
folders of other cells, the share flagged; it draws the curve. Validation only: a threshold
read off TEST would be chosen on TEST.

Usage: python benchmarks/other_threshold.py EVAL_DIR [EVAL_DIR ...] [--out out/other_threshold]
(EVAL_DIR: an ``hv evaluate`` output folder with one sub-folder per source)
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from grouped_ci import probabilities  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from hv.labels import CLASS_NAMES, OUTPUT_NAMES  # noqa: E402

THRESHOLDS = np.round(np.arange(0.10, 0.951, 0.05), 2)


def read_sources(eval_dirs: list[Path]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per source folder name: (true output index (n,), probabilities (n, 5)), pooled over the evaluations."""
    pooled: dict[str, tuple[list[int], list[list[float]]]] = {}
    for eval_dir in eval_dirs:
        for path in sorted(eval_dir.glob("*/predictions.csv")):
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))  # every row: the cells outside the four too
            true, probs = pooled.setdefault(path.parent.name, ([], []))
            true += [OUTPUT_NAMES.index(r["true"]) for r in rows]
            probs += list(probabilities(rows))
    return {name: (np.array(t), np.array(p)) for name, (t, p) in pooled.items()}


def answers(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """The output each cell gets: the largest of five (None), or "other" from ``threshold`` on."""
    if threshold is None:
        return probs.argmax(axis=1)
    other = len(CLASS_NAMES)
    return np.where(probs[:, other] >= threshold, other, probs[:, :other].argmax(axis=1))


def figures(true: np.ndarray, pred: np.ndarray) -> dict:
    other = len(CLASS_NAMES)
    four, rest = true < other, true == other
    found = {}
    if four.any():
        found |= {"n": int(four.sum()), "accuracy": round(float((pred[four] == true[four]).mean()), 4),
                  "four_class_flagged": round(float((pred[four] == other).mean()), 4)}
    if rest.any():
        found |= {"other_n": int(rest.sum()), "other_flagged": round(float((pred[rest] == other).mean()), 4)}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("out/other_threshold"))
    args = parser.parse_args()
    sources = read_sources(args.eval_dirs)
    result = {"evaluations": [str(d) for d in args.eval_dirs], "largest_of_five": {}, "threshold": {}}
    for name, (true, probs) in sources.items():
        result["largest_of_five"][name] = figures(true, answers(probs, None))
        result["threshold"][name] = {str(t): figures(true, answers(probs, t)) for t in THRESHOLDS}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "other_threshold.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, args.out / "other_threshold.png")
    print(json.dumps(result["largest_of_five"], indent=2))
    print(f"wrote {args.out / 'other_threshold.json'} and other_threshold.png")


def plot(result: dict, path: Path) -> None:
    """Left: each four-class source's accuracy; right: the other cells flagged; against the threshold."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, by_threshold in result["threshold"].items():
        key = "accuracy" if "accuracy" in next(iter(by_threshold.values())) else "other_flagged"
        ax = left if key == "accuracy" else right
        line, = ax.plot(THRESHOLDS, [100 * by_threshold[str(t)][key] for t in THRESHOLDS], marker=".", label=name)
        ax.axhline(100 * result["largest_of_five"][name][key], color=line.get_color(), linestyle=":", linewidth=1)
    left.axhline(99, color="grey", linewidth=0.8)  # issue #15's targets: pbc top-1 99 %, other cells 90 % flagged
    right.axhline(90, color="grey", linewidth=0.8)
    left.set_title("four-class cells: top-1 (grey: 99 %)", fontsize=10)
    right.set_title("cells outside the four: flagged (grey: 90 %)", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel('"other" from this probability on (dotted: the largest of five)', fontsize=9)
        ax.set_ylabel("%")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left" if ax is right else "lower right")
    fig.suptitle("When to flag a cell as none of the four (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
