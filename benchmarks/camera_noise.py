"""How noisy the data sets are, as ``hv.noise`` reads them, and what a camera's known noise reads as.

1. Every image (``--per-set 20000``) or a seeded sample of each data set as stored: the noise read at the
   classifier's scale (``hv.noise.noise_level`` at the image's own expected cell diameter). The training sets'
   highest reads are what ``stream.noise_max`` is chosen on: noisier than any image the model learnt from.
2. The counting benchmark's slide of whole fields (``slide_count.py --tile 640 480``) with Gaussian noise of a
   known standard deviation added to every frame (``slide_count.py --noise``): what 200 of its frames read.
3. The time one read takes on a 640 x 480 frame.

What the noise does to the count and the labels: ``python benchmarks/slide_count.py --tile 640 480 --speeds 24
--noise S`` (BENCHMARKS.md, "A noisy camera").

Usage: python benchmarks/camera_noise.py [--per-set 300] [--out out/camera_noise.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from illumination import DATA, SETS, sample_paths, write_report  # on sys.path
from slide_count import BCCD, choose_fields, scan_scope

from hv.config import Config
from hv.locator import cell_diameter_px
from hv.noise import noise_level

REPO = Path(__file__).resolve().parent.parent
PERCENTILES = (50, 95, 99, 99.9, 100)


def read(image_bgr: np.ndarray, config: Config) -> float:
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    diameter = cell_diameter_px(rgb, config.locator)
    return noise_level(image_bgr, diameter, config.locator.crop_context, config.model.image_size)


def data_sets(per_set: int, seed: int, config: Config) -> dict:
    results = {}
    for name in SETS:
        paths = sample_paths(name, per_set, seed)
        values = np.array([read(cv2.imread(str(p)), config) for p in paths])
        results[name] = {"images": len(paths),
                         "percentiles": {f"p{q:g}": round(float(np.percentile(values, q)), 3) for q in PERCENTILES},
                         "highest_five": [round(float(v), 3) for v in np.sort(values)[-5:]]}
        print(name, json.dumps(results[name]), flush=True)
    return results


def known_noise(levels: tuple[float, ...], config: Config) -> dict:
    fields = choose_fields(BCCD, 100, (640, 480), 0, set())
    results = {}
    for level in levels:
        scope = scan_scope(BCCD, fields, 24, 0, tile=(640, 480), noise=level)
        reads = [read(scope.render(i), config) for i in range(0, scope.frame_count, max(1, scope.frame_count // 200))]
        results[f"{level:g}"] = {"frames": len(reads), "read_median": round(float(np.median(reads)), 3),
                                 "read_p5_p95": [round(float(np.percentile(reads, q)), 3) for q in (5, 95)]}
        print(f"noise {level:g}", json.dumps(results[f"{level:g}"]), flush=True)
    return results


def timing(config: Config, repeats: int = 200) -> dict:
    frame = cv2.imread(str(sorted((DATA / "bccd").rglob("*.jpg"))[0]))
    took = []
    for _ in range(repeats):
        started = time.perf_counter()
        noise_level(frame, 179.0, config.locator.crop_context, config.model.image_size)
        took.append(time.perf_counter() - started)
    return {"frame": list(frame.shape[1::-1]), "read_ms_median": round(1000 * float(np.median(took)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, nargs="+", default=[0, 2, 4, 6, 8, 16])
    parser.add_argument("--out", default=str(REPO / "out" / "camera_noise.json"))
    args = parser.parse_args()
    config = Config()
    report = {"data_sets": data_sets(args.per_set, args.seed, config),
              "known_noise": known_noise(tuple(args.noise), config), "timing": timing(config)}
    print(json.dumps(report["timing"]))
    write_report(report, args.out)


if __name__ == "__main__":
    main()
