"""A constant shift of the class scores, fitted and scored cross-fitted on a cross-validation's held-out answers.

Adds a constant to each of the four classes' logits ("other" is the reference, its shift 0):
what the ``pred`` layer's bias would carry. The shift is fitted by minimising the negative
log-likelihood of the true class (convex in the shift; L-BFGS) of each run's answers, summed
over the runs, on the held-out images of all folds but one: blood-cells/TRAIN with each
original weighted alike, pbc/TRAIN and pbc/OTHER (true class "other") by image, the three
sources weighted alike. The fold left out is answered with it: each run's logits shifted,
the runs' probabilities averaged (as an average of runs answers). Pooled over the folds,
paired image by image with no shift: blood-cells per original (the gain with a 95 % interval
by original), pbc/TRAIN by image, pbc/OTHER flagged, four-class cells flagged, and the shift
fitted on all folds (what a bundle would carry). The logits come from ``predictions.csv``'s
probabilities (4 decimals, so each is clipped at 1e-5 first). Validation only.

Usage: python benchmarks/class_bias.py --runs out/held_out_folds/fold{1,2,3,4}of4_seed0
           out/held_out_folds/fold{1,2,3,4}of4_seed1 [--json out/class_bias.json]
(the first run's folders name the folds; every run must answer each of their images)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from grouped_ci import image_key, pooled_rows, probabilities  # benchmarks/ is on sys.path when run as a script
from runs_compared import paired_gain
from scipy.optimize import minimize

from hv.labels import CLASS_NAMES, OUTPUT_NAMES
from training.data import field_group, load_originals
from training.metrics import accuracy_per_group, group_members

SOURCES = ("blood-cells_TRAIN", "pbc_TRAIN", "pbc_OTHER_train")
OTHER = len(OUTPUT_NAMES) - 1


def fold_data(folders: list[list[Path]], originals) -> list[dict]:
    """Per fold of the first run, per source: each run's log-probabilities, the true class, each image's group."""
    every = {(i, source): {image_key(r["path"]): r for r in pooled_rows([str(d / source) for d in run],
                                                                         "OTHER" in source)}
             for i, run in enumerate(folders) for source in SOURCES}
    folds = []
    for k, folder in enumerate(folders[0]):
        fold = {}
        for source in SOURCES:
            rows = pooled_rows([str(folder / source)], "OTHER" in source)
            logs = []
            for i, run in enumerate(folders):
                answers = every[i, source]
                missing = [r["path"] for r in rows if image_key(r["path"]) not in answers]
                if missing:
                    raise SystemExit(f"{run[0].parent}: no answer for {len(missing)} images, e.g. {missing[0]}")
                logs.append(np.log(np.clip(probabilities([answers[image_key(r["path"])] for r in rows]), 1e-5, 1)))
            true = np.array([OUTPUT_NAMES.index(r["true"]) for r in rows])
            if source.startswith("blood-cells"):
                groups = [field_group(r["path"], int(t), originals=originals) for r, t in zip(rows, true)]
            else:
                groups = [f"{k}:{image_key(r['path'])}" for r in rows]
            fold[source] = {"logs": logs, "true": true, "groups": groups}
        folds.append(fold)
    return folds


def shifted(logs: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Softmax of log-probabilities plus the four classes' shift (other: 0)."""
    z = logs + np.append(shift, 0.0)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def pooled(folds: list[dict], source: str) -> dict:
    parts = [f[source] for f in folds]
    return {"logs": [np.concatenate([p["logs"][r] for p in parts]) for r in range(len(parts[0]["logs"]))],
            "true": np.concatenate([p["true"] for p in parts]), "groups": [g for p in parts for g in p["groups"]]}


def fit_shift(data: dict[str, dict]) -> np.ndarray:
    """The shift minimising the runs' summed NLL, each source weighted alike (blood-cells: each original alike)."""
    terms = []
    for d in data.values():
        members = group_members(d["groups"])
        weight = np.empty(len(d["true"]))
        for m in members.values():
            weight[m] = 1.0 / (len(m) * len(members))
        terms.append((d, weight / len(data)))

    def loss(shift):
        value, grad = 0.0, np.zeros(len(CLASS_NAMES))
        for d, weight in terms:
            onehot = np.eye(len(OUTPUT_NAMES))[d["true"]]
            for logs in d["logs"]:
                p = shifted(logs, shift)
                value -= float(weight @ np.log(p[np.arange(len(p)), d["true"]]))
                grad += (weight[:, None] * (p - onehot)).sum(axis=0)[:len(CLASS_NAMES)]
        return value, grad

    return minimize(loss, np.zeros(len(CLASS_NAMES)), jac=True, method="L-BFGS-B").x


def answers(d: dict, shift: np.ndarray) -> np.ndarray:
    return np.mean([shifted(logs, shift) for logs in d["logs"]], axis=0).argmax(axis=1)


def scores(d: dict, predicted: np.ndarray, source: str) -> dict:
    if "OTHER" in source:
        return {"flagged": round(float(np.mean(predicted == OTHER)), 4), "n": len(predicted)}
    right = (predicted == d["true"]).astype(float)
    out = {"by_image": round(float(right.mean()), 4), "flagged": round(float(np.mean(predicted == OTHER)), 4),
           "recall_by_image": {n: round(float(right[d["true"] == k].mean()), 3) for k, n in enumerate(CLASS_NAMES)},
           "n": len(predicted)}
    if source.startswith("blood-cells"):
        out["per_original"] = round(accuracy_per_group(d["groups"], right), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", type=Path, required=True,
                        help="each run's fold folders (hv evaluate --held-out), runs one after another")
    parser.add_argument("--folds", type=int, default=4, help="folders per run")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if len(args.runs) % args.folds:
        raise SystemExit(f"--runs: {len(args.runs)} folders is not a whole number of runs of {args.folds} folds")
    runs = [args.runs[i:i + args.folds] for i in range(0, len(args.runs), args.folds)]
    folds = fold_data(runs, load_originals("bundled"))

    by_fold, predicted = [], {s: {"none": [], "shift": []} for s in SOURCES}
    for k in range(len(folds)):
        shift = fit_shift({s: pooled([f for j, f in enumerate(folds) if j != k], s) for s in SOURCES})
        by_fold.append([round(float(v), 3) for v in shift])
        for s in SOURCES:
            predicted[s]["none"].append(answers(folds[k][s], np.zeros(len(CLASS_NAMES))))
            predicted[s]["shift"].append(answers(folds[k][s], shift))
        print(f"fold {k + 1}: shift {dict(zip(CLASS_NAMES, by_fold[-1]))}", flush=True)

    result = {"runs": [[str(f) for f in run] for run in runs], "shift_by_fold": by_fold}
    for s in SOURCES:
        d = pooled(folds, s)
        none, shift = (np.concatenate(predicted[s][key]) for key in ("none", "shift"))
        result[s] = {"no_shift": scores(d, none, s), "cross_fitted_shift": scores(d, shift, s)}
        if s.startswith("blood-cells"):
            members = list(group_members(d["groups"]).values())
            gain = np.array([np.mean(shift[m] == d["true"][m]) - np.mean(none[m] == d["true"][m]) for m in members])
            result[s]["gain_per_original"] = paired_gain(gain)
    result["shift_all_folds"] = dict(zip(CLASS_NAMES, (round(float(v), 3) for v in
                                                       fit_shift({s: pooled(folds, s) for s in SOURCES}))))
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
