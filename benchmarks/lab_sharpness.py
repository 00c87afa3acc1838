"""How sharp each lab's crops are at the model input, and how much blur makes PBC look like blood-cells.

Crops ``--images`` random TRAIN images of each lab the way training does (``crop_fields``) and
reports the median variance of the Laplacian of the grey crop (high: fine detail such as
granules is visible) and the mean absolute horizontal gradient; then the same for PBC's crops
blurred by Gaussians of several widths (pixels of the 224-px model input). This is what
``augment.blur`` (``training/augment.py`` RandomBlur) was sized on. TRAIN only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from hv.config import load_config
from training.data import discover, source_name
from training.evaluate import crop_fields

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def sharpness(crop_rgb: np.ndarray) -> tuple[float, float]:
    """(variance of the Laplacian, mean absolute horizontal gradient) of the grey crop."""
    grey = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var()), float(np.abs(np.diff(grey, axis=1)).mean())


def medians(crops: np.ndarray) -> dict:
    values = np.array([sharpness(c) for c in crops])
    return {"laplacian_var": round(float(np.median(values[:, 0])), 2),
            "gradient": round(float(np.median(values[:, 1])), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labs", nargs="+", default=[str(DATA / "blood-cells" / "TRAIN"), str(DATA / "pbc" / "TRAIN")])
    parser.add_argument("--blur-lab", default=str(DATA / "pbc" / "TRAIN"), help="the lab whose crops are blurred")
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    parser.add_argument("--images", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out" / "lab_sharpness.json"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    rng = np.random.default_rng(args.seed)
    crops = {}
    for lab in dict.fromkeys([*args.labs, args.blur_lab]):
        paths = list(discover(lab)[0].paths)
        picked = [paths[i] for i in sorted(rng.choice(len(paths), min(args.images, len(paths)), replace=False))]
        crops[lab] = crop_fields(picked, config)[0]
    report = {"images": args.images, "labs": {source_name(lab): medians(crops[lab]) for lab in args.labs},
              "blurred": {f"{sigma:g}": medians(np.stack([cv2.GaussianBlur(c, (0, 0), sigma)
                                                           for c in crops[args.blur_lab]]))
                          for sigma in args.sigmas}, "blurred_lab": source_name(args.blur_lab)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
