"""Batch replay of a folder of recordings: videos per minute with 1 worker (no Ray) and with Ray workers.

Records ``--videos`` clips of the virtual microscope over BCCD fields (640x480 MJPG, each with
its own seed and ``--frames`` frames), then replays the folder with ``hv replay``'s batch code
(``stream.batch_replay.replay_videos``) with 1 worker and with ``--workers`` Ray workers,
alternating, ``--repeats`` times each, into fresh output folders. Reports the median videos per
minute of each, their ratio, and Ray's start-up cost (``ray.init`` to a started local
instance, measured apart, median of the repeats). Writes ``out/batch_replay/batch_replay.json``.

Usage: python benchmarks/batch_replay.py [--videos 8] [--frames 300] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import cv2

from hv.bundled import DEFAULT_MODEL
from hv.config import load_config
from stream.batch_replay import replay_videos
from stream.virtual_microscope import VirtualMicroscope

REPO = Path(__file__).resolve().parent.parent
BCCD = REPO.parent / "shared" / "data" / "bccd"


def record(folder: Path, count: int, frames: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(count):
        path = folder / f"slide_{seed:02d}.avi"
        scope = VirtualMicroscope(BCCD, num_frames=frames, seed=seed)
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, scope.frame_size)
        for frame in scope:
            writer.write(frame.image_bgr)
        writer.release()
        paths.append(path)
    return paths


def ray_start_s() -> float:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    elapsed = time.perf_counter() - started
    ray.shutdown()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--out", default=str(REPO / "out" / "batch_replay"))
    args = parser.parse_args()
    out = Path(args.out)
    config = load_config(REPO / "config.toml")
    videos = record(out / "videos", args.videos, args.frames)
    rates: dict[str, list[float]] = {"1": [], str(args.workers): []}
    starts = []
    for repeat in range(args.repeats):
        starts.append(ray_start_s())
        for workers in (1, args.workers):
            target = out / f"run_{workers}"
            shutil.rmtree(target, ignore_errors=True)
            started = time.perf_counter()
            summary = replay_videos(videos, target, args.model, config, workers=workers, progress=False)
            elapsed = time.perf_counter() - started
            if not summary["complete"]:
                raise SystemExit(f"batch with {workers} workers failed: {summary['failed']}")
            rates[str(workers)].append(60 * len(videos) / elapsed)
            print(f"repeat {repeat}: {workers} worker(s): {rates[str(workers)][-1]:.2f} videos/min", flush=True)
    median = {k: statistics.median(v) for k, v in rates.items()}
    report = {"videos": args.videos, "frames_per_video": args.frames, "videos_per_minute": rates,
              "median_videos_per_minute": median, "speed_up": median[str(args.workers)] / median["1"],
              "ray_start_s": starts, "median_ray_start_s": statistics.median(starts)}
    (out / "batch_replay.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
