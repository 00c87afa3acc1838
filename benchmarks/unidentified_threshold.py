"""Which ``stream.min_confidence`` keeps the differential closest to the truth, on held-out cells.

The stream counts a cell whose mean top probability is under ``stream.min_confidence`` as
"unidentified", apart from the differential. Leaving uncertain cells out biases the
differential against the class the model is least sure of. For each threshold this reads
held-out predictions (``hv evaluate --held-out``'s ``predictions.csv``, the folds of a
cross-validation pooled: every image held out once) and works out, per lab, how each true
class is answered (the four classes, "other", "unidentified"), with every original field
weighted alike within its class (``training.data.field_group``: blood-cells/ holds dozens
of copies of each original; pbc/ one image per cell). For a class mix w (a differential a
lab would meet) the counted differential is m = sum_c w_c P(answer | c) over the four class
answers, renormalised, and its error the total variation |m - w| / 2, in points.

Writes ``--out`` (JSON) and, with ``--plot``, a picture of the error against the threshold.

Usage: python benchmarks/unidentified_threshold.py --lab blood-cells DIR [DIR ...] --lab pbc DIR [DIR ...]
       [--thresholds 0.3 0.35 0.4 0.45 0.5] [--out out/unidentified_threshold.json] [--plot FILE.png]
(DIR: a folder of one source that hv evaluate wrote, e.g. out/held_out_folds_always/fold1of4_seed0/blood-cells_TRAIN)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # grouped_ci's readers

from grouped_ci import pooled_rows, probabilities  # noqa: E402

from hv.labels import CLASS_NAMES, OUTPUT_NAMES  # noqa: E402
from training.data import field_group, load_originals  # noqa: E402

UNIDENTIFIED = "unidentified"
ANSWERS = (*OUTPUT_NAMES, UNIDENTIFIED)
# Class mixes in CLASS_NAMES order (eosinophil, lymphocyte, monocyte, neutrophil), set before any threshold was scored.
MIXES = {
    "normal adult": (0.04, 0.30, 0.06, 0.60),
    "eosinophilia": (0.25, 0.25, 0.05, 0.45),
    "lymphocytosis": (0.04, 0.60, 0.06, 0.30),
}


def answers_at(probs: np.ndarray, threshold: float) -> list[str]:
    """The stream's answer per cell: the most probable output, or unidentified under the threshold."""
    top = probs.argmax(axis=1)
    return [UNIDENTIFIED if p[t] < threshold else OUTPUT_NAMES[t] for p, t in zip(probs, top)]


def answer_rates(true: list[str], groups: list[str], answers: list[str]) -> dict[str, dict[str, float]]:
    """P(answer | true class), each original weighted alike within its class.

    An original filed under two classes (blood-cells/ holds a few) counts once in each, with its copies there.
    """
    per_group: dict[tuple[str, str], list[str]] = defaultdict(list)
    for t, g, a in zip(true, groups, answers):
        per_group[g, t].append(a)
    rates = {}
    for name in CLASS_NAMES:
        members = [key for key in per_group if key[1] == name]
        if not members:
            continue
        rates[name] = {a: float(np.mean([per_group[g].count(a) / len(per_group[g]) for g in members]))
                       for a in ANSWERS}
    return rates


def differential_error(rates: dict[str, dict[str, float]], mix: tuple[float, ...]) -> float:
    """Total variation (points) between the counted differential and the true mix."""
    counted = np.array([sum(w * rates[c][a] for c, w in zip(CLASS_NAMES, mix)) for a in CLASS_NAMES])
    return float(50 * np.abs(counted / counted.sum() - np.array(mix)).sum())


def lab_figures(folders: list[str], thresholds: list[float], originals: dict[str, str]) -> dict:
    rows = pooled_rows(folders)
    missing = sorted(set(CLASS_NAMES) - {r["true"] for r in rows})
    if missing:
        raise SystemExit(f"{folders[0]}: no held-out cell of {', '.join(missing)}: every class's rates are needed")
    probs = probabilities(rows)
    true = [r["true"] for r in rows]
    groups = [field_group(r["path"], OUTPUT_NAMES.index(r["true"]), originals=originals) for r in rows]
    figures = {"images": len(rows), "originals": len(set(groups)), "thresholds": {}}
    for threshold in thresholds:
        rates = answer_rates(true, groups, answers_at(probs, threshold))
        figures["thresholds"][f"{threshold:g}"] = {
            "unidentified_by_class": {c: round(rates[c][UNIDENTIFIED], 4) for c in CLASS_NAMES},
            "right_by_class": {c: round(rates[c][c], 4) for c in CLASS_NAMES},
            "differential_error_points": {m: round(differential_error(rates, w), 2) for m, w in MIXES.items()},
        }
    return figures


def mean_error(labs: dict, threshold: str) -> float:
    """The threshold's score: its differential error averaged over every lab and mix."""
    errors = [error for figures in labs.values()
              for error in figures["thresholds"][threshold]["differential_error_points"].values()]
    return round(float(np.mean(errors)), 2)


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for lab, figures in report["labs"].items():
        ts = [float(t) for t in figures["thresholds"]]
        for mix in MIXES:
            ax.plot(ts, [f["differential_error_points"][mix] for f in figures["thresholds"].values()],
                    marker="o", label=f"{lab}, {mix}")
    ax.plot([float(t) for t in report["score"]], list(report["score"].values()), "k-", lw=3, label="mean (score)")
    ax.set_xlabel("stream.min_confidence (under it: unidentified, out of the differential)")
    ax.set_ylabel("differential error (total variation, points)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", nargs="+", action="append", required=True, metavar=("NAME", "DIR"),
                        help="a lab's name and the held-out evaluation folders to pool (repeat per lab)")
    parser.add_argument("--thresholds", nargs="+", type=float, default=[0.3, 0.35, 0.4, 0.45, 0.5])
    parser.add_argument("--originals", default="bundled", help="data.original_groups (training.data.load_originals)")
    parser.add_argument("--out", default=str(ROOT / "out" / "unidentified_threshold.json"))
    parser.add_argument("--plot", help="PNG of the error against the threshold")
    args = parser.parse_args()
    if any(len(lab) < 2 for lab in args.lab):
        parser.error("--lab NAME DIR [DIR ...]: a name and at least one folder")
    originals = load_originals(args.originals)
    labs = {lab[0]: lab_figures(lab[1:], args.thresholds, originals) for lab in args.lab}
    score = {f"{t:g}": mean_error(labs, f"{t:g}") for t in args.thresholds}
    report = {"labs": labs, "mixes": MIXES, "score": score}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for lab, figures in labs.items():
        print(f"{lab}: {figures['images']} images, {figures['originals']} originals")
        for t, f in figures["thresholds"].items():
            print(f"  {t:>5}  error {f['differential_error_points']}  unidentified {f['unidentified_by_class']}")
    print("score (mean error, points):", score)
    if args.plot:
        plot(report, Path(args.plot))


if __name__ == "__main__":
    main()
