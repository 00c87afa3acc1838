"""The figures behind two stream settings: stage-motion drift by correlation width, and background colour cast by lab.

1. Drift: the counting benchmark's slide and scan (``slide_count.py``, one speed) rendered
   frame by frame; the stage motion estimated at each ``--widths`` value is compared with the
   true path. Reports the largest and the final error in pixels, and ms per frame. This is
   where ``stream.motion_width_px = 320`` comes from.
2. Colour cast (``stream/frame_quality.py``): the background's largest / smallest channel mean
   on 200 seeded images of each data set; ``stream.colour_cast_max`` must stay above every lab's.

Writes ``out/frame_checks.json``.

Usage: python benchmarks/frame_checks.py [--speed 24] [--widths 160 320]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np
from slide_count import BCCD, FRAME, choose_fields, defect_frames  # benchmarks/ is on sys.path as a script

from hv.config import Config
from stream.frame_quality import _colour_cast
from stream.motion import StageMotion, small_grey
from stream.virtual_microscope import VirtualMicroscope, serpentine_scan

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def drift(speed: float, widths: list[int]) -> dict:
    fields = choose_fields(BCCD, 100, (320, 240), 0)
    base = VirtualMicroscope(BCCD, fields=fields, tile_size=(320, 240), num_frames=1, border_px=80)
    path = serpentine_scan((base.mosaic.shape[1], base.mosaic.shape[0]), FRAME, speed, row_step_frac=0.4, seed=0)
    scope = VirtualMicroscope(BCCD, fields=fields, tile_size=(320, 240), path=path, border_px=80, seed=0,
                              defects=defect_frames(len(path), 0.01, 0))
    frames = [(i, scope.render(i)) for i in range(len(path)) if i not in scope._defects]
    result = {}
    for width in widths:
        motion = StageMotion(dataclasses.replace(Config().stream, motion_width_px=width))
        errors, started = [], time.perf_counter()
        for i, frame in frames:
            position = motion.update(small_grey(frame, width), FRAME[0])
            if position.new_region:
                origin = path[i]
            errors.append((position.x - (path[i, 0] - origin[0]), position.y - (path[i, 1] - origin[1])))
        errors = np.abs(np.array(errors))
        result[str(width)] = {"max_error_px": errors.max(axis=0).round(1).tolist(),
                              "final_error_px": errors[-1].round(1).tolist(), "regions": motion.region + 1,
                              "ms_per_frame": round(1000 * (time.perf_counter() - started) / len(frames), 2)}
    return {"speed_px_per_frame": speed, "frames": len(frames), "by_width": result}


def colour_casts() -> dict:
    patterns = {"bccd": "bccd/JPEGImages/*.jpg", "blood-cells/TRAIN": "blood-cells/TRAIN/*/*.jpeg",
                "pbc/TRAIN": "pbc/TRAIN/*/*.jpg", "pbc/OTHER": "pbc/OTHER/*/*.jpg"}
    result = {}
    for name, pattern in patterns.items():
        paths = sorted(DATA.glob(pattern))
        random.Random(0).shuffle(paths)
        values = [_colour_cast(cv2.imread(str(p))) for p in paths[:200]]
        result[name] = {"images": len(values), "median": round(float(np.median(values)), 3),
                        "max": round(float(np.max(values)), 3)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=24)
    parser.add_argument("--widths", type=int, nargs="+", default=[160, 320])
    args = parser.parse_args()
    report = {"drift": drift(args.speed, args.widths), "colour_cast": colour_casts()}
    (REPO / "out").mkdir(exist_ok=True)
    (REPO / "out" / "frame_checks.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
