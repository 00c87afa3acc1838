"""Remedies for a noisy camera, tried on validation: a fold model's held-out images with grain added, each
denoising filter applied to the image before the crop, and the top-1 of each.

The fold models of "How deep to fine-tune" (``runs/paired56_fold<I>of4_seed0``) never saw the images their
kept predictions list (``benchmarks/results/held_out_folds_paired56``: blood-cells/TRAIN originals held out,
pbc/TRAIN images held out); a seeded sample of each is read, Gaussian grain of each ``--noise`` level added
(seeded per image), and classified as ``hv evaluate`` does (``hv.preprocess.field_view``). No TEST set.

Usage: python benchmarks/noise_remedies.py [--fold 1] [--out out/noise_remedies.json]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from pathlib import Path

import cv2
import numpy as np

from hv.classifier import load_classifier
from hv.config import Config
from hv.labels import OUTPUT_NAMES
from hv.preprocess import field_view, read_image_rgb

REPO = Path(__file__).resolve().parent.parent
KEPT = REPO / "benchmarks" / "results" / "held_out_folds_paired56"
SOURCES = {"blood-cells_TRAIN": 300, "pbc_TRAIN": 200}
FILTERS = {
    "none": lambda image: image,
    "gauss0.8": lambda image: cv2.GaussianBlur(image, (0, 0), 0.8),
    "gauss1.2": lambda image: cv2.GaussianBlur(image, (0, 0), 1.2),
    "bilat30": lambda image: cv2.bilateralFilter(image, 5, 30, 3),
    "median3": lambda image: cv2.medianBlur(image, 3),
}


def held_out(fold: int, source: str, count: int) -> list[dict]:
    with gzip.open(KEPT / f"fold{fold}of4_seed0" / source / "predictions.csv.gz", "rt") as f:
        return random.Random(0).sample(list(csv.DictReader(f)), count)


def grainy(image: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    if not sigma:
        return image
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--noise", type=float, nargs="+", default=[0, 8, 16])
    parser.add_argument("--out", default=str(REPO / "out" / "noise_remedies.json"))
    args = parser.parse_args()
    classifier = load_classifier(REPO / "runs" / f"paired56_fold{args.fold}of4_seed0" / "model.keras")
    config = Config()
    results = {}
    for source, count in SOURCES.items():
        rows = held_out(args.fold, source, count)
        images = [read_image_rgb(row["path"]) for row in rows]
        for sigma in args.noise:
            noisy = [grainy(image, sigma, seed) for seed, image in enumerate(images)]
            for name, denoise in FILTERS.items():
                if not sigma and name != "none":
                    continue
                crops = np.stack([field_view(denoise(image), config)[0] for image in noisy])
                probs = classifier.predict(crops)
                top1 = float(np.mean([OUTPUT_NAMES[p.argmax()] == row["true"] for p, row in zip(probs, rows)]))
                results[f"{source} noise {sigma:g} {name}"] = round(top1, 3)
                print(f"{source} noise {sigma:g} {name}: {top1:.3f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"fold": args.fold, "top1": results}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
