"""Does adjusting the counted differential for the classifier's known confusion bring it nearer the truth?

"Adjusted classify and count" (Forman 2008): with M = P(answer | true class) measured on cells the
model never saw (answers: the four classes, "other", "unidentified" under ``stream.min_confidence``),
a count whose four-class shares are q came, in expectation, from class shares p with
M4^T p proportional to q (M4: M's four class-answer columns). The adjusted differential solves
M4^T x = q by non-negative least squares and takes p = x / sum(x).

Read on held-out predictions of the folds of one cross-validation (``hv evaluate --held-out``'s
``predictions.csv``), cross-fitted: each fold's cells are counted with M fitted on the other folds.
For every fold, lab and class mix (``unidentified_threshold.MIXES``), ``--draws`` counts of
``--cells`` cells are drawn: the class of each cell from the mix, its answer from its class's answers
on that fold (each original weighted alike within its class, as ``unidentified_threshold`` does). Each
count's error is the total variation between its differential and the mix, in points, as counted and
as adjusted.

Writes ``--out`` (JSON): per lab and mix, the mean error as counted and adjusted (over folds and draws),
and the score the rule reads (the mean over labs and mixes).

``--slides slide_count.json ...`` also adjusts the counting benchmark's differentials (each speed's
counted shares) with the first lab's M from all its folds, and reports their distance from the truth
as counted and adjusted. The bundled model trained on most of those slides' fields (or, with
``--not-in``, not at all), unlike the fold models on their held-out cells: a reading, not the rule.

Usage: python benchmarks/adjusted_differential.py --lab blood-cells DIR DIR [DIR ...] --lab pbc DIR DIR [...]
       [--cells 100] [--draws 2000] [--min-confidence 0.5] [--out out/adjusted_differential.json]
(DIR: one fold's folder of one source that hv evaluate wrote, e.g.
out/held_out_folds_paired56/fold1of4_seed0/blood-cells_TRAIN; two folds at least)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from grouped_ci import probabilities, read_rows  # noqa: E402
from unidentified_threshold import ANSWERS, MIXES, answer_rates, answers_at  # noqa: E402

from hv.labels import CLASS_NAMES, OUTPUT_NAMES  # noqa: E402
from training.data import field_group, load_originals  # noqa: E402

FOUR = list(range(len(CLASS_NAMES)))  # the four class answers come first in ANSWERS


def fold_rates(folder: str, min_confidence: float, originals: dict[str, str]) -> np.ndarray:
    """(4 classes, len(ANSWERS)) P(answer | class) of one fold's held-out cells, originals weighted alike."""
    rows = read_rows(folder)
    missing = sorted(set(CLASS_NAMES) - {r["true"] for r in rows})
    if missing:
        raise SystemExit(f"{folder}: no held-out cell of {', '.join(missing)}: every class's answers are needed")
    true = [r["true"] for r in rows]
    groups = [field_group(r["path"], OUTPUT_NAMES.index(r["true"]), originals=originals) for r in rows]
    rates = answer_rates(true, groups, answers_at(probabilities(rows), min_confidence))
    return np.array([[rates[c][a] for a in ANSWERS] for c in CLASS_NAMES])


def adjusted(counted_shares: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Class shares that best explain ``counted_shares`` (four, summing to 1) through ``rates``."""
    x, _ = nnls(rates[:, FOUR].T, counted_shares)
    return x / x.sum() if x.sum() > 0 else counted_shares


def tv_points(a: np.ndarray, b: np.ndarray) -> float:
    return float(50 * np.abs(a - b).sum())


def draw_errors(test_rates: np.ndarray, fit_rates: np.ndarray, mix: np.ndarray, cells: int, draws: int,
                rng: np.random.Generator) -> tuple[list[float], list[float]]:
    """Errors (points) of ``draws`` counts of ``cells`` cells, as counted and as adjusted."""
    counted_errors, adjusted_errors = [], []
    for _ in range(draws):
        per_class = rng.multinomial(cells, mix)
        answers = sum(rng.multinomial(n, row / row.sum()) for n, row in zip(per_class, test_rates))
        four = answers[FOUR].astype(float)
        if four.sum() == 0:
            continue
        shares = four / four.sum()
        counted_errors.append(tv_points(shares, mix))
        adjusted_errors.append(tv_points(adjusted(shares, fit_rates), mix))
    return counted_errors, adjusted_errors


def lab_figures(folders: list[str], args: argparse.Namespace, originals: dict[str, str],
                rng: np.random.Generator) -> dict:
    per_fold = [fold_rates(folder, args.min_confidence, originals) for folder in folders]
    figures = {}
    for name, mix in MIXES.items():
        mix = np.array(mix)
        counted, adjusted_ = [], []
        for k, test in enumerate(per_fold):
            # M fitted on the other folds: each fold an equal share (they hold about as many originals).
            fit = np.mean([rates for j, rates in enumerate(per_fold) if j != k], axis=0)
            c, a = draw_errors(test, fit, mix, args.cells, args.draws, rng)
            counted += c
            adjusted_ += a
        figures[name] = {"counted": round(float(np.mean(counted)), 2), "adjusted": round(float(np.mean(adjusted_)), 2),
                         "counted_p90": round(float(np.percentile(counted, 90)), 2),
                         "adjusted_p90": round(float(np.percentile(adjusted_, 90)), 2)}
    return {"folds": len(folders), "mixes": figures,
            "rates_all_folds": {c: dict(zip(ANSWERS, np.mean(per_fold, axis=0)[i].round(4).tolist()))
                                for i, c in enumerate(CLASS_NAMES)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lab", nargs="+", action="append", required=True, metavar=("NAME", "DIR"),
                        help="a lab's name and one held-out evaluation folder per fold (repeat per lab)")
    parser.add_argument("--cells", type=int, default=100, help="cells per count (a technician's differential)")
    parser.add_argument("--draws", type=int, default=2000, help="counts drawn per fold, lab and mix")
    parser.add_argument("--min-confidence", type=float, default=0.5, help="stream.min_confidence")
    parser.add_argument("--originals", default="bundled", help="data.original_groups (training.data.load_originals)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--slides", nargs="*", default=[], metavar="SLIDE_COUNT_JSON",
                        help="counting-benchmark reports to adjust with the first lab's confusion")
    parser.add_argument("--out", default=str(ROOT / "out" / "adjusted_differential.json"))
    args = parser.parse_args()
    if any(len(lab) < 3 for lab in args.lab):
        parser.error("--lab NAME DIR DIR [DIR ...]: a name and one folder per fold, two folds at least "
                     "(each fold is counted with the confusion measured on the others)")
    rng = np.random.default_rng(args.seed)
    originals = load_originals(args.originals)
    labs = {lab[0]: lab_figures(lab[1:], args, originals, rng) for lab in args.lab}
    pairs = [(f["counted"], f["adjusted"]) for lab in labs.values() for f in lab["mixes"].values()]
    score = {"counted": round(float(np.mean([c for c, _ in pairs])), 2),
             "adjusted": round(float(np.mean([a for _, a in pairs])), 2),
             "largest_rise": round(float(max(a - c for c, a in pairs)), 2)}
    report = {"cells": args.cells, "draws": args.draws, "min_confidence": args.min_confidence, "labs": labs,
              "mixes": MIXES, "score": score}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for lab, figures in labs.items():
        print(f"{lab} ({figures['folds']} folds):")
        for mix, f in figures["mixes"].items():
            print(f"  {mix:>14}: counted {f['counted']:5.2f}  adjusted {f['adjusted']:5.2f} points "
                  f"(90th percentile {f['counted_p90']:.2f} / {f['adjusted_p90']:.2f})")
    print("score (mean error over labs and mixes, points):", score)
    if args.slides:
        first = labs[args.lab[0][0]]["rates_all_folds"]
        rates = np.array([[first[c][a] for a in ANSWERS] for c in CLASS_NAMES])
        report["slides"] = {path: slide_figures(path, rates) for path in args.slides}
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        for path, speeds in report["slides"].items():
            print(path)
            for speed, f in speeds.items():
                print(f"  {speed:>3} px/frame: counted {f['counted']:5.2f}  adjusted {f['adjusted']:5.2f} points")


def slide_figures(path: str, rates: np.ndarray) -> dict:
    """Each speed's differential on a counting slide (slide_count.json), as counted and adjusted, against its truth."""
    report = json.loads(Path(path).read_text())
    figures = {}
    for speed, result in report["speeds_px_per_frame"].items():
        truth = np.array([result["truth_percent"][c] for c in CLASS_NAMES]) / 100
        counted = np.array([result["percent"][c] for c in CLASS_NAMES]) / 100
        shares = adjusted(counted, rates)
        figures[speed] = {"counted": round(tv_points(counted, truth), 2),
                          "adjusted": round(tv_points(shares, truth), 2),
                          "adjusted_percent": dict(zip(CLASS_NAMES, (100 * shares).round(2).tolist()))}
    return figures


if __name__ == "__main__":
    main()
