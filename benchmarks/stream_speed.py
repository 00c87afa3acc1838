"""Replay speed vs decode-only speed of the same video, and live latency, at a camera's frame size.

1. Records a clip of the virtual microscope over the BCCD fields (MJPG, like a microscope
   camera's recording), 640x480 unless ``--frame-size`` says otherwise (a larger sensor at the
   same magnification: a wider view, more cells a frame).
2. Times decode-only (reading every frame with OpenCV) and ``hv replay`` (decode, locate,
   track, classify, annotate, CSV) on that clip, alternating, ``--repeats`` times each;
   reports medians and their ratio.
3. Runs the virtual microscope live at 30 fps through the stream pipeline and reports
   capture-to-overlay latency percentiles.
Both report the cost of the frame-quality checks and the stage-motion estimate in ms per frame.

Usage: python benchmarks/stream_speed.py [--model models/...] [--frames 600] [--repeats 3] [--frame-size 1920 1080]
       [--config F]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from hv.bundled import DEFAULT_MODEL, SAMPLE_FIELDS
from hv.classifier import load_classifier
from hv.config import load_config
from stream.pipeline import StreamPipeline, run_stream
from stream.sources import VideoFileSource
from stream.virtual_microscope import VirtualMicroscope

REPO = Path(__file__).resolve().parent.parent
BCCD = REPO.parent / "shared" / "data" / "bccd"


def record_clip(path: Path, frames: int, fields: Path, frame_size: tuple[int, int]) -> Path:
    scope = VirtualMicroscope(fields, num_frames=frames, seed=1, frame_size=frame_size)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, scope.frame_size)
    for frame in scope:
        writer.write(frame.image_bgr)
    writer.release()
    return path


def decode_fps(path: Path) -> float:
    start, count = time.perf_counter(), 0
    capture = cv2.VideoCapture(str(path))
    while capture.read()[0]:
        count += 1
    capture.release()
    return count / (time.perf_counter() - start)


def replay_fps(path: Path, model: str, config, out: Path) -> dict:
    pipeline = StreamPipeline(load_classifier(model), config)
    with VideoFileSource(path) as source:
        return run_stream(source, pipeline, out, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--fields", default=str(BCCD if BCCD.exists() else SAMPLE_FIELDS))
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live-frames", type=int, default=600)
    parser.add_argument("--frame-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--config", default=str(REPO / "config.toml"),
                        help="e.g. a copy with one check off, to measure its cost")
    parser.add_argument("--out", default=str(REPO / "out" / "stream_speed"))
    args = parser.parse_args()
    frame_size = tuple(args.frame_size)
    logging.basicConfig(level=logging.WARNING)
    config = load_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        clip = record_clip(Path(tmp) / "clip.avi", args.frames, Path(args.fields), frame_size)
        replay_fps(clip, args.model, config, out / "warmup")  # load the model, warm caches
        decode, replay, cells, steps = [], [], [], []
        for _ in range(args.repeats):
            decode.append(decode_fps(clip))
            summary = replay_fps(clip, args.model, config, out / "replay")
            replay.append(summary["fps"])
            cells.append(summary["cells"])
            steps.append(summary["ms_per_frame"])
    live_pipeline = StreamPipeline(load_classifier(args.model), config)
    live = run_stream(
        VirtualMicroscope(Path(args.fields), num_frames=args.live_frames, realtime=True, seed=2, frame_size=frame_size),
        live_pipeline,
        out / "live",
        progress=False,
    )
    result = {
        "model": args.model,
        "frames": args.frames,
        "frame_size": f"{frame_size[0]}x{frame_size[1]}",
        "repeats": args.repeats,
        "decode_fps_median": round(float(np.median(decode)), 1),
        "replay_fps_median": round(float(np.median(replay)), 1),
        "replay_over_decode": round(float(np.median(replay) / np.median(decode)), 3),
        "decode_fps": [round(v, 1) for v in decode],
        "replay_fps": [round(v, 1) for v in replay],
        "cells_counted": cells,
        # The pipeline's own steps, per frame (median over the repeats): quality checks, stage motion,
        # and everything that follows (scale, locate, track, classify, count).
        "replay_ms_per_frame_median": {step: round(float(np.median([s[step] for s in steps])), 3) for step in steps[0]},
        "live": {"fps_target": 30, "frames": live["frames"], "fps": live["fps"], "latency_ms": live["latency_ms"],
                 "ms_per_frame": live["ms_per_frame"], "frames_skipped": live["frames_skipped"]},
    }
    (out / "stream_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
