"""A lab's archive of recordings: every video replayed into a folder of its own, on Ray when asked.

Each video's folder is exactly what ``hv replay`` writes for one video (``cells.csv``,
``summary.json``). The batch adds ``summary.json`` (one entry per video, totals over the
videos that completed, the failures with their reason) and ``cells.csv`` (every video's
rows with a ``video`` column) at the top of the output folder. A video that fails is
reported and does not stop the others; a rerun skips the videos whose folder already holds
a complete summary from the same model.

With ``workers`` > 1 the videos go to a pool of Ray actors (``ray.util.ActorPool``), one
pipeline and one model load per actor, on a local Ray instance or the cluster at
``address``. With one worker Ray is not used (nor needed).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from hv.classifier import file_sha256, load_classifier
from hv.config import Config
from stream.sinks import CSV_COLUMNS, write_json_atomic

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")


class RayMissingError(RuntimeError):
    """--workers > 1 without Ray installed."""


def expand_videos(inputs: Iterable[str]) -> list[Path]:
    """Paths, globs and folders (searched recursively for video files) -> sorted unique video paths."""
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
        else:
            found.append(path)  # a missing file is reported as that video's failure
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path, None)
    return list(unique)


def output_folders(videos: list[Path], out_root: Path) -> list[Path]:
    """One folder per video, named by its stem (``-2``, ``-3`` ... when two share a stem)."""
    used: dict[str, int] = {}
    folders = []
    for video in videos:
        used[video.stem] = used.get(video.stem, 0) + 1
        name = video.stem if used[video.stem] == 1 else f"{video.stem}-{used[video.stem]}"
        folders.append(out_root / name)
    return folders


def is_complete(out_dir: Path, model_sha256: str | None) -> bool:
    """A previous run of this video finished, with this model: nothing to redo."""
    try:
        summary = json.loads((out_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(summary.get("complete")) and (summary.get("model") or {}).get("sha256") == model_sha256


class VideoReplayer:
    """One loaded model, replaying videos one after another (a Ray actor, or used directly)."""

    def __init__(self, model: str, config: Config, stride: int = 1):
        self.classifier = load_classifier(model)
        self.config, self.stride = config, stride

    def replay(self, video: str, out_dir: str) -> dict:
        """Replay one video into ``out_dir``; returns its entry for the batch summary, never raises."""
        from stream.pipeline import StreamPipeline, run_stream
        from stream.sources import SourceError, VideoFileSource

        entry = {"video": video, "out_dir": out_dir}
        try:
            pipeline = StreamPipeline(self.classifier, self.config)
            with VideoFileSource(video, stride=self.stride) as source:
                summary = run_stream(source, pipeline, Path(out_dir), progress=False)
            return {**entry, "complete": summary["complete"], "error": summary["error"], "summary": summary}
        except (SourceError, OSError, ValueError) as exc:  # an unreadable video: that video's failure only
            return {**entry, "complete": False, "error": f"{type(exc).__name__}: {exc}", "summary": None}
        except Exception as exc:  # a defect; still only this video's failure, with its traceback in the log
            log.exception("%s: replay failed", video)
            return {**entry, "complete": False, "error": f"{type(exc).__name__}: {exc}", "summary": None}


def replay_videos(videos: list[Path], out_root: Path, model: str, config: Config, *, workers: int = 1,
                  address: str | None = None, stride: int = 1, progress: bool = True) -> dict:
    """Replay ``videos`` into ``out_root/<video>/`` and write the batch's summary and CSV; returns the summary."""
    out_root.mkdir(parents=True, exist_ok=True)
    model_sha = file_sha256(model) if Path(model).is_file() else None
    folders = output_folders(videos, out_root)
    todo = [(str(v), str(f)) for v, f in zip(videos, folders) if not is_complete(f, model_sha)]
    entries = {str(v): {"video": str(v), "out_dir": str(f), "complete": True, "error": None, "skipped": True,
                        "summary": json.loads((f / "summary.json").read_text())}
               for v, f in zip(videos, folders) if is_complete(f, model_sha)}
    bar = tqdm(total=len(todo), unit="video", disable=not progress)
    for entry in _run(todo, model, config, workers, address, stride):
        entries[entry["video"]] = entry
        if entry["error"]:
            log.warning("%s: %s", entry["video"], entry["error"])
        bar.update(1)
    bar.close()
    ordered = [entries[str(v)] for v in videos]
    summary = batch_summary(ordered, workers)
    write_combined_csv(ordered, out_root / "cells.csv")
    write_json_atomic(out_root / "summary.json", summary)
    return summary


def _run(todo: list[tuple[str, str]], model: str, config: Config, workers: int, address: str | None,
         stride: int) -> Iterable[dict]:
    if not todo:
        return
    if workers <= 1 and address is None:
        replayer = VideoReplayer(model, config, stride)
        for video, out_dir in todo:
            yield replayer.replay(video, out_dir)
        return
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise RayMissingError("--workers > 1 needs Ray: pip install -e '.[ray]' (or pip install 'ray>=2.9')") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        actor = ray.remote(num_cpus=1)(VideoReplayer)
        pool = ActorPool([actor.remote(model, config, stride) for _ in range(max(1, workers))])
        yield from pool.map_unordered(lambda a, job: a.replay.remote(*job), todo)
    finally:
        if started_here:
            ray.shutdown()


def batch_summary(entries: list[dict], workers: int) -> dict:
    """Per-video status and the totals over the videos that completed."""
    done = [e for e in entries if e["complete"]]
    totals: Counter[str] = Counter()
    for entry in done:
        totals.update(entry["summary"]["counts"])
    return {
        "videos": [{"video": e["video"], "out_dir": e["out_dir"], "complete": e["complete"], "error": e["error"],
                    "skipped_as_done": bool(e.get("skipped")),
                    "cells": e["summary"]["cells"] if e["summary"] else None,
                    "frames": e["summary"]["frames"] if e["summary"] else None} for e in entries],
        "counts": dict(totals), "cells": sum(e["summary"]["cells"] for e in done),
        # Cells marked "check" (summaries written before 2026-12-06 do not say: 0)
        "to_check": sum(e["summary"].get("to_check", 0) for e in done),
        "failed": [{"video": e["video"], "error": e["error"]} for e in entries if not e["complete"]],
        "complete": len(done) == len(entries), "workers": workers,
    }


def write_combined_csv(entries: list[dict], path: Path) -> None:
    """Every video's cells.csv, one after the other, with the video's path first on each row."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as out:
        writer = csv.DictWriter(out, ["video", *CSV_COLUMNS])
        writer.writeheader()
        for entry in entries:
            source = Path(entry["out_dir"]) / "cells.csv"
            if entry["complete"] and source.is_file():  # a failed video's partial rows stay in its own folder
                with source.open(newline="") as f:
                    writer.writerows({"video": entry["video"], **row} for row in csv.DictReader(f))
    tmp.replace(path)
