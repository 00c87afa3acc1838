"""How evenly the data sets are lit, as ``hv.illumination`` reads it, and how well it reads a known vignette.

1. For seeded samples of each data set as stored (blood-cells/TRAIN and TEST, pbc/TRAIN, TEST and OTHER, the
   BCCD fields; ``--per-set 20000``: every image): the darkest lit point of the fitted light surface over its
   brightest (1: even). The training sets' lowest reads are what ``locator.uneven_light_below`` is chosen on:
   a bar no training image falls under leaves the training crops, and the model's figures, as they were.
2. The counting benchmark's slide of whole fields (``slide_count.py --tile 640 480``) rendered through a
   vignette of known strength (``slide_count.light_mask``): what the read gives on 200 of its frames, and what
   is left after flattening (the read on the flattened frame).
3. The time one read, one flattening and one read of each channel's light take on a 640 x 480 frame.

Usage: python benchmarks/illumination.py [--per-set 300] [--out out/illumination.json]
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np
from slide_count import BCCD, FRAME, choose_fields, light_mask, scan_scope  # on sys.path

from hv.config import Config
from hv.field_of_view import field_of_view, small_grey
from hv.illumination import darkest_lit, flatten, light_surface, small_colour

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
SETS = ("blood-cells/TRAIN", "blood-cells/TEST", "pbc/TRAIN", "pbc/TEST", "pbc/OTHER", "bccd")
PERCENTILES = (0, 0.1, 1, 5, 50)


def darkest(image_bgr: np.ndarray, width: int) -> float | None:
    """The fitted light's darkest lit point over its brightest, or None where it cannot be read."""
    grey = small_grey(image_bgr, width)
    view = field_of_view(grey)
    surface = light_surface(grey, view)
    return None if surface is None else darkest_lit(surface, view)


def sample_paths(name: str, per_set: int, seed: int) -> list[Path]:
    """A seeded sample of ``per_set`` images of one data set as stored (all of them if it holds fewer)."""
    paths = sorted(p for p in (DATA / name).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return random.Random(seed).sample(paths, min(per_set, len(paths)))


def write_report(report: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")


def data_sets(per_set: int, width: int, seed: int) -> dict:
    results = {}
    for name in SETS:
        paths = sample_paths(name, per_set, seed)
        reads = [darkest(cv2.imread(str(p)), width) for p in paths]
        values = np.array([r for r in reads if r is not None])
        results[name] = {"images": len(paths), "not_read": len(paths) - len(values),
                         "percentiles": {f"p{q:g}": round(float(np.percentile(values, q)), 3) for q in PERCENTILES},
                         "lowest_five": [round(float(v), 3) for v in np.sort(values)[:5]]}
        print(name, json.dumps(results[name]), flush=True)
    return results


def known_vignettes(width: int, vignettes: tuple[float, ...]) -> dict:
    fields = choose_fields(BCCD, 100, (640, 480), 0, set())
    results = {}
    for vignette in vignettes:
        scope = scan_scope(BCCD, fields, 24, 0, tile=(640, 480), vignette=vignette)
        frames = [scope.render(i) for i in range(0, scope.frame_count, max(1, scope.frame_count // 200))]
        before = [darkest(f, width) for f in frames]
        after = []
        for frame in frames:
            grey = small_grey(frame, width)
            surface = light_surface(grey, field_of_view(grey))
            after.append(None if surface is None else darkest(flatten(frame, surface), width))
        true = float(light_mask(FRAME, vignette=vignette).min()) if vignette < 1 else 1.0
        results[f"{vignette:g}"] = {
            "true_darkest": round(true, 3), "frames": len(frames),
            "read_median": round(float(np.median([b for b in before if b is not None])), 3),
            "read_p5_p95": [round(float(np.percentile([b for b in before if b is not None], q)), 3) for q in (5, 95)],
            "after_flattening_median": round(float(np.median([a for a in after if a is not None])), 3)}
        print(f"vignette {vignette:g}", json.dumps(results[f"{vignette:g}"]), flush=True)
    return results


def timing(width: int, repeats: int = 200) -> dict:
    frame = cv2.imread(str(next(iter(sorted((DATA / "bccd").rglob("*.jpg"))))))
    frame = (frame * light_mask((frame.shape[1], frame.shape[0]), vignette=0.5)).astype(np.uint8)
    grey = small_grey(frame, width)
    read, flat, channels = [], [], []
    for _ in range(repeats):
        started = time.perf_counter()
        surface = light_surface(grey)
        middle = time.perf_counter()
        flatten(frame, surface)
        done = time.perf_counter()
        light_surface(small_colour(frame, grey.shape))  # each channel's light, read where a frame is evened
        read.append(middle - started)
        flat.append(done - middle)
        channels.append(time.perf_counter() - done)
    return {"frame": list(frame.shape[1::-1]), "read_ms_median": round(1000 * float(np.median(read)), 3),
            "flatten_ms_median": round(1000 * float(np.median(flat)), 3),
            "channel_read_ms_median": round(1000 * float(np.median(channels)), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-set", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vignettes", type=float, nargs="+", default=[1.0, 0.8, 0.6, 0.4])
    parser.add_argument("--out", default=str(REPO / "out" / "illumination.json"))
    args = parser.parse_args()
    width = Config().stream.motion_width_px
    report = {"small_grey_width": width, "data_sets": data_sets(args.per_set, width, args.seed),
              "known_vignettes": known_vignettes(width, tuple(args.vignettes)), "timing": timing(width)}
    print(json.dumps(report["timing"]))
    write_report(report, args.out)


if __name__ == "__main__":
    main()
