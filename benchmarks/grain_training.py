"""Grain in training, judged on validation: fold models trained with and without a camera's grain among the
augmentations, on their held-out images with grain added.

Each fold's pair is the recorded ``runs/paired56_fold<I>of4_seed0`` (today's recipe) and a run of the trial
config (``--trial``, e.g. ``runs/grain8_fold<I>of4_seed0``: ``benchmarks/configs/two_labs_grain.toml``) with the
same seed and held-out originals. Both classify the seeded sample of held-out images that
``benchmarks/noise_remedies.py`` reads (blood-cells/TRAIN originals and pbc/TRAIN images the fold never trained
on), with Gaussian grain of each ``--noise`` level added to the image before the crop (seeded per image, the
same grain for both models), as ``hv evaluate`` crops them. Reports top-1 per fold, source and level, and the
trial's difference (mean over folds). No TEST set is read. The clean held-out figures (every held-out image,
per original) come from ``hv evaluate --held-out`` and ``benchmarks/grouped_ci.py``.

Usage: python benchmarks/grain_training.py --folds 1 2 [--trial grain8] [--out out/grain_training.json]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from illumination import write_report  # on sys.path
from noise_remedies import SOURCES, grainy, held_out

from hv.classifier import load_classifier
from hv.config import Config
from hv.labels import OUTPUT_NAMES
from hv.preprocess import field_view, read_image_rgb

REPO = Path(__file__).resolve().parent.parent
BASELINE = "paired56"


def top1_at_each_level(model: Path, fold: int, levels: list[float], config: Config) -> dict[str, float]:
    """Top-1 of ``model`` on fold ``fold``'s held-out sample of each source, at each grain level."""
    classifier = load_classifier(model)
    figures = {}
    for source, count in SOURCES.items():
        rows = held_out(fold, source, count)
        images = [read_image_rgb(row["path"]) for row in rows]
        for sigma in levels:
            crops = np.stack([field_view(grainy(image, sigma, seed), config)[0] for seed, image in enumerate(images)])
            calls = [OUTPUT_NAMES[p.argmax()] for p in classifier.predict(crops)]
            figures[f"{source} noise {sigma:g}"] = float(np.mean([c == row["true"] for c, row in zip(calls, rows)]))
            print(f"{model.parent.name}: {source} noise {sigma:g}: {figures[f'{source} noise {sigma:g}']:.3f}",
                  flush=True)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trial", default="grain8", help="run name prefix of the trial's fold models")
    parser.add_argument("--noise", type=float, nargs="+", default=[0, 8, 16])
    parser.add_argument("--out", default=str(REPO / "out" / "grain_training.json"))
    args = parser.parse_args()
    config = Config()
    per_fold = {}
    for fold in args.folds:
        runs = {name: REPO / "runs" / f"{name}_fold{fold}of4_seed0" / "model.keras" for name in (BASELINE, args.trial)}
        per_fold[fold] = {name: top1_at_each_level(path, fold, args.noise, config) for name, path in runs.items()}
    keys = list(per_fold[args.folds[0]][BASELINE])
    difference = {key: round(100 * float(np.mean([per_fold[f][args.trial][key] - per_fold[f][BASELINE][key]
                                                   for f in args.folds])), 2) for key in keys}
    for key, points in difference.items():
        print(f"{args.trial} - {BASELINE}, {key}: {points:+.2f} points (mean of folds {args.folds})")
    report = {"folds": args.folds, "baseline": BASELINE, "trial": args.trial, "noise_levels": args.noise,
              "images_per_fold": SOURCES, "top1": {str(f): v for f, v in per_fold.items()},
              "difference_points": difference}
    write_report(report, args.out)


if __name__ == "__main__":
    main()
