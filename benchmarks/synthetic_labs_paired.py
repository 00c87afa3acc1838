"""A recipe change against the recipe of before, seed by seed, on the synthetic labs: the paired differences.

Each ``--pair BASE TRIAL`` is one seed: the ``synthetic_labs.py`` output folders of a model of
the recipe of before and of one trained the new way with the same seed and validation split
(so both scored the same held-out images). Each side is a glob pattern; every folder it matches
holds a ``synthetic_labs.json`` (e.g. the pbc/TRAIN shifts and the blood-cells/TRAIN row, run
apart). Rows are (source, shift), read as trained; the table gives each side's top-1, each
pair's difference in points and the mean difference over the pairs. ``--at-least ROW=POINTS``
checks a rule written before the runs: the mean difference of that row must be at least
POINTS (a row is ``shift`` for pbc/TRAIN, ``source:shift`` otherwise, e.g.
``blood-cells/TRAIN:none``). ``--plot PNG`` draws each pair's difference and the mean per row,
with the rule's bounds. Where every side recorded each image's answer (``synthetic_labs.py``
since 2026-12-06, fifth session) on the same images, a row also gets a 95 % interval of its mean
difference from a bootstrap over original fields (``training.metrics.grouped_interval``): the
blood-cells row rests on a few dozen originals with dozens of copies each. Validation only: no
TEST set is read.

Usage: python benchmarks/synthetic_labs_paired.py --pair 'out/blur_hue/bundle_e2_seed0_*'
           'out/blur_hue/blur_hue_seed0_*' [--pair ...] [--at-least soft_camera=5 none=-1 ...] [--json OUT]
           [--plot PNG]
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

import numpy as np

from training.metrics import grouped_interval  # numpy only: no TensorFlow in a script that reads JSON

PBC_SOURCE = "pbc/TRAIN"


def row_name(source: str, shift: str) -> str:
    return shift if source == PBC_SOURCE else f"{source}:{shift}"


def read_side(pattern: str) -> tuple[dict[str, float], int, dict[str, tuple[list[str], list[str], list[int]]]]:
    """Top-1 as trained per row over every synthetic_labs.json the pattern's folders hold, the split seed,
    and per row, where recorded, (scored images, their original fields, each image right or not)."""
    folders = sorted(glob.glob(pattern))
    files = [Path(f) / "synthetic_labs.json" for f in folders if (Path(f) / "synthetic_labs.json").is_file()]
    if not files:
        raise SystemExit(f"{pattern}: no folder with a synthetic_labs.json (run benchmarks/synthetic_labs.py first)")
    rows, seeds, answers = {}, set(), {}
    for path in files:
        report = json.loads(path.read_text())
        seeds.add(report["seed"])
        for shift, figures in report["shifts"].items():
            row = row_name(report["source"], shift)
            rows[row] = figures["as_trained"]["top1"]
            if "right" in figures["as_trained"] and "scored_images" in report:
                answers[row] = (report["scored_images"], report["scored_groups"], figures["as_trained"]["right"])
    if len(seeds) != 1:
        raise SystemExit(f"{pattern}: the folders were scored on different splits (seeds {sorted(seeds)})")
    return rows, seeds.pop(), answers


def difference_interval(sides: list[tuple[tuple, tuple]]) -> list[float] | None:
    """95 % interval (points) of the mean paired difference from a bootstrap over original fields, or None
    when some side did not record its answers or the sides scored different images."""
    if any(base is None or trial is None for base, trial in sides):
        return None
    images, groups = sides[0][0][0], sides[0][0][1]
    if any(side[0] != images for pair in sides for side in pair):
        return None
    per_image = np.mean([np.array(trial[2], float) - np.array(base[2], float) for base, trial in sides], axis=0)
    low, high = grouped_interval(groups, per_image)
    return [round(100 * low, 2), round(100 * high, 2)]


def paired(pairs: list[tuple[str, str]]) -> dict:
    table, answers = [], []
    for base_pattern, trial_pattern in pairs:
        base, base_seed, base_answers = read_side(base_pattern)
        trial, trial_seed, trial_answers = read_side(trial_pattern)
        if base_seed != trial_seed:
            raise SystemExit(f"{base_pattern} and {trial_pattern} held out different images (split seeds "
                             f"{base_seed} and {trial_seed}): not a pair")
        table.append({"base": base_pattern, "trial": trial_pattern, "base_top1": base, "trial_top1": trial})
        answers.append((base_answers, trial_answers))
    every_row = {r for p in table for side in ("base_top1", "trial_top1") for r in p[side]}
    rows = [r for r in table[0]["base_top1"] if all(r in p["base_top1"] and r in p["trial_top1"] for p in table)]
    for r in sorted(every_row - set(rows)):  # a row some side lacks cannot be paired: say so, never drop it quietly
        print(f"{r}: not scored on every side of every pair; left out", file=sys.stderr)
    mean = {r: round(100 * sum(p["trial_top1"][r] - p["base_top1"][r] for p in table) / len(table), 2) for r in rows}
    interval = {r: difference_interval([(base.get(r), trial.get(r)) for base, trial in answers]) for r in rows}
    return {"pairs": table, "rows": rows, "mean_difference_points": mean,
            "mean_difference_95_by_original": interval}


def print_table(result: dict) -> None:
    pairs = result["pairs"]
    header = "| row | " + " | ".join(f"pair {i + 1}: before / new (difference)" for i in range(len(pairs)))
    print(header + " | mean difference | 95 % by original |")
    print("|---" * (len(pairs) + 3) + "|")
    for r in result["rows"]:
        cells = [f"{100 * p['base_top1'][r]:.1f} / {100 * p['trial_top1'][r]:.1f} % "
                 f"({100 * (p['trial_top1'][r] - p['base_top1'][r]):+.1f})" for p in pairs]
        interval = result["mean_difference_95_by_original"][r]
        shown = "not recorded" if interval is None else f"{interval[0]:+.2f} to {interval[1]:+.2f}"
        print(f"| {r} | " + " | ".join(cells) + f" | {result['mean_difference_points'][r]:+.2f} | {shown} |")


def check_rule(result: dict, at_least: list[str]) -> dict[str, bool]:
    verdicts = {}
    for item in at_least:
        row, _, points = item.partition("=")
        if row not in result["mean_difference_points"]:
            raise SystemExit(f"--at-least {item}: no row {row!r}; rows: {', '.join(result['rows'])}")
        verdicts[row] = result["mean_difference_points"][row] >= float(points)
        print(f"{row}: mean {result['mean_difference_points'][row]:+.2f} points, at least {float(points):+g}: "
              f"{'met' if verdicts[row] else 'NOT met'}")
    return verdicts


def plot(result: dict, at_least: list[str], path: str, title: str) -> None:
    """Rows down, difference in points across: a dot per pair, a bar for the mean, a tick for the rule's bound."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    rows = result["rows"]
    bounds = {item.partition("=")[0]: float(item.partition("=")[2]) for item in at_least}
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.5))
    y = range(len(rows))
    means = [result["mean_difference_points"][r] for r in rows]
    ax.barh(y, means, color=["tab:green" if m >= bounds.get(r, -float("inf")) else "tab:red"
                             for r, m in zip(rows, means)], alpha=0.5, label="mean over the pairs")
    for i, pair in enumerate(result["pairs"]):
        ax.scatter([100 * (pair["trial_top1"][r] - pair["base_top1"][r]) for r in rows], y, s=18, zorder=3,
                   label=f"pair {i + 1}")
    for k, r in enumerate(rows):
        if r in bounds:
            ax.plot([bounds[r]] * 2, [k - 0.4, k + 0.4], color="black", linewidth=2)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_yticks(list(y), rows)
    ax.invert_yaxis()
    ax.set_xlabel("new recipe minus recipe of before, top-1 as trained (points); black tick: the rule's bound")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pair", nargs=2, action="append", required=True, metavar=("BASE", "TRIAL"))
    parser.add_argument("--at-least", nargs="*", default=[], metavar="ROW=POINTS")
    parser.add_argument("--json", default="")
    parser.add_argument("--plot", default="", metavar="PNG")
    parser.add_argument("--title", default="a recipe change on the synthetic labs, seed by seed")
    args = parser.parse_args()
    result = paired([tuple(p) for p in args.pair])
    print_table(result)
    if args.at_least:
        result["rule"] = check_rule(result, args.at_least)
        print(f"{len(result['pairs'])} pair(s); the rule is {'met' if all(result['rule'].values()) else 'NOT met'}")
    if args.plot:
        plot(result, args.at_least, args.plot, args.title)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
