"""The figures behind five frame checks: stage-motion drift by correlation width, colour cast by lab, no colour,
JPEG compression and a round field of view.

1. Drift: the counting benchmark's slide and scan (``slide_count.py``, one speed) rendered
   frame by frame; the stage motion estimated at each ``--widths`` value is compared with the
   true path. Reports the largest and the final error in pixels, and ms per frame. This is
   where ``stream.motion_width_px = 320`` comes from.
2. Colour cast (``stream/frame_quality.py``): the background's largest / smallest channel mean
   on 200 seeded images of each data set; ``stream.colour_cast_max`` must stay above every lab's.
3. No colour (``hv.stain.has_no_colour``): how far from grey (``colour_spread``) every image of each
   data set is, as drawn and under ``synthetic_labs.py``'s stains (200 seeded images), and a BCCD field
   made greyscale, as a file and through a video codec; ``hv.stain.NO_COLOUR_SPREAD`` must lie between.
4. JPEG (``hv.jpeg_blocks``, ``stream.jpeg_quality_min``): the quality read back from frames of the
   slide of whole fields (``slide_count.py --tile 640 480``, 30 frames spread over the scan) at 0.5x, 1x
   and 1.5x, coded at each of ``JPEG_QUALITIES`` (0: not coded); from 200 seeded images of each data set
   as stored; from the 1x frames through H.264 (ffmpeg's libx264 at three CRFs); and ms per read.
5. Round view (``hv.field_of_view``): in how many of 300 seeded images of each data set as stored a field
   stop's shadow is found, and how much of the frame it takes (a whole microscope field should have none).

Writes ``--out`` (``out/frame_checks.json``).

Usage: python benchmarks/frame_checks.py [--speed 24] [--widths 160 320] [--parts drift cast colour jpeg view] [--out F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from slide_count import BCCD, FRAME, choose_fields, defect_frames, jpeg_coded, scan_scope  # on sys.path

from hv.config import Config
from hv.field_of_view import field_of_view, small_grey
from hv.jpeg_blocks import jpeg_quality
from hv.stain import NO_COLOUR_SPREAD, colour_spread
from stream.frame_quality import _colour_cast
from stream.motion import StageMotion
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


def colour_spreads() -> dict:
    from synthetic_labs import shift_image  # loads TensorFlow: only for this part

    patterns = {"bccd": "bccd/JPEGImages/*.jpg", "blood-cells/TRAIN": "blood-cells/TRAIN/*/*.jpeg",
                "blood-cells/TEST": "blood-cells/TEST/*/*.jpeg", "pbc/TRAIN": "pbc/TRAIN/*/*.jpg",
                "pbc/TEST": "pbc/TEST/*/*.jpg", "pbc/OTHER": "pbc/OTHER/*/*.jpg"}
    result: dict = {"no_colour_spread": NO_COLOUR_SPREAD, "data_sets": {}, "stains": {}}
    for name, pattern in patterns.items():
        paths = sorted(DATA.glob(pattern))
        values = np.array([colour_spread(cv2.imread(str(p))) for p in paths])
        result["data_sets"][name] = {"images": len(values), "min": round(float(values.min()), 1),
                                     "p1": round(float(np.percentile(values, 1)), 1)}
        random.Random(0).shuffle(paths)
        for stain in ("faded_stain", "warm_lamp", "brown_stain", "soft_camera"):
            drawn = [colour_spread(shift_image(cv2.imread(str(p))[..., ::-1], stain)) for p in paths[:200]]
            low = result["stains"].setdefault(stain, float("inf"))
            result["stains"][stain] = round(min(low, float(np.min(drawn))), 1)
    field = cv2.imread(str(BCCD / "JPEGImages" / "BloodImage_00240.jpg"))
    grey = cv2.cvtColor(cv2.cvtColor(field, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    result["greyscale"] = {"file": colour_spread(grey)}
    video = REPO / "out" / "frame_checks_grey.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (grey.shape[1], grey.shape[0]))
    for _ in range(3):
        writer.write(grey)
    writer.release()
    ok, frame = cv2.VideoCapture(str(video)).read()
    result["greyscale"]["mp4v video"] = colour_spread(frame) if ok else None
    video.unlink(missing_ok=True)
    return result


JPEG_QUALITIES = (0, 95, 75, 50, 40, 30, 25, 22, 20, 15, 10)
DATA_SETS = {"bccd": "bccd/JPEGImages/*.jpg", "blood-cells/TRAIN": "blood-cells/TRAIN/*/*.jpeg",
             "blood-cells/TEST": "blood-cells/TEST/*/*.jpeg", "pbc/TRAIN": "pbc/TRAIN/*/*.jpg",
             "pbc/OTHER": "pbc/OTHER/*/*.jpg"}


def _reads(frames: list[np.ndarray]) -> dict:
    reads = [jpeg_quality(f) for f in frames]
    values = [r for r in reads if r is not None]
    summary = {"frames": len(reads), "not_read": len(reads) - len(values)}
    if values:
        summary.update(median=round(float(np.median(values)), 1), min=round(float(np.min(values)), 1),
                       max=round(float(np.max(values)), 1))
    return summary


def _through_h264(frames: list[np.ndarray], crf: int) -> list[np.ndarray]:
    height, width = frames[0].shape[:2]
    with tempfile.TemporaryDirectory() as scratch:
        video = Path(scratch) / "scan.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s",
                        f"{width}x{height}", "-r", "30", "-i", "-", "-c:v", "libx264", "-crf", str(crf),
                        "-pix_fmt", "yuv420p", "-y", str(video)], input=b"".join(f.tobytes() for f in frames),
                       check=True)
        capture, decoded = cv2.VideoCapture(str(video)), []
        while True:
            ok, frame = capture.read()
            if not ok:
                return decoded
            decoded.append(frame)


def jpeg_reads() -> dict:
    fields = choose_fields(BCCD, 100, (640, 480), 0)
    result: dict = {"threshold": Config().stream.jpeg_quality_min, "slide_of_whole_fields": {}}
    for zoom in (0.5, 1.0, 1.5):
        scope = scan_scope(BCCD, fields, 24, 0, tile=(640, 480), zoom=zoom)
        frames = [scope.render(int(i)) for i in np.linspace(0, len(scope._path) - 1, 30)]
        result["slide_of_whole_fields"][f"{zoom}x"] = {str(q): _reads([jpeg_coded(f, q) for f in frames])
                                                      for q in JPEG_QUALITIES}
        if zoom == 1.0:
            blocky = [jpeg_coded(f, 20) for f in frames]
            started = time.perf_counter()
            for f in blocky:
                jpeg_quality(f)
            result["ms_per_read"] = round(1000 * (time.perf_counter() - started) / len(frames), 2)
            if shutil.which("ffmpeg"):
                result["h264_1x"] = {f"crf {crf}": _reads(_through_h264(frames, crf)) for crf in (23, 35, 45)}
    result["data_sets"] = {}
    for name, pattern in DATA_SETS.items():
        paths = sorted(DATA.glob(pattern))
        random.Random(0).shuffle(paths)
        result["data_sets"][name] = _reads([cv2.imread(str(p)) for p in paths[:200]])
    return result


def stops_in_data_sets() -> dict:
    result = {}
    for name, pattern in DATA_SETS.items():
        paths = sorted(DATA.glob(pattern))
        random.Random(0).shuffle(paths)
        shares = []
        for path in paths[:300]:
            view = field_of_view(small_grey(cv2.imread(str(path)), Config().stream.motion_width_px))
            if view is not None:
                shares.append(float(view.stop.mean()))
        result[name] = {"images": min(300, len(paths)), "stop_found": len(shares),
                        "shadow_share": [round(float(np.min(shares)), 3), round(float(np.max(shares)), 3)]
                        if shares else None}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=24)
    parser.add_argument("--widths", type=int, nargs="+", default=[160, 320])
    parser.add_argument("--parts", nargs="+", choices=["drift", "cast", "colour", "jpeg", "view"],
                        default=["drift", "cast", "colour", "jpeg", "view"])
    parser.add_argument("--out", default=str(REPO / "out" / "frame_checks.json"))
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    (REPO / "out").mkdir(exist_ok=True)  # the codec check's scratch video
    report = {}
    if "drift" in args.parts:
        report["drift"] = drift(args.speed, args.widths)
    if "cast" in args.parts:
        report["colour_cast"] = colour_casts()
    if "colour" in args.parts:
        report["colour"] = colour_spreads()
    if "jpeg" in args.parts:
        report["jpeg"] = jpeg_reads()
    if "view" in args.parts:
        report["round_view"] = stops_in_data_sets()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
