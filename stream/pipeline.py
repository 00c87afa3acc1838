"""The stream loop: source -> locate -> track -> classify tracks -> count -> annotate -> sinks."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hv.classifier import Classifier
from hv.config import Config
from hv.locator import RunningCellScale, locate_cells
from stream.annotators import BoxAnnotator, CountPanelAnnotator, LabelAnnotator
from stream.counter import DifferentialCount
from stream.detections import Detections, Frame
from stream.sinks import CsvSink, VideoSink, write_json_atomic
from stream.track_classifier import TrackClassifier
from stream.tracker import IouTracker

log = logging.getLogger(__name__)

LATENCY_WINDOW = 10_000  # frames whose latency summary.json's p50 / p95 describe


class StreamPipeline:
    """Per-frame processing with the state a stream needs (tracks, votes, counts)."""

    def __init__(self, classifier: Classifier, config: Config):
        self.config = config
        self.tracker = IouTracker(config.stream.track_min_iou, config.stream.track_max_missing)
        self.track_classifier = TrackClassifier(
            classifier, config.locator, min_confidence=config.stream.min_confidence,
            recheck_every=config.stream.recheck_every, max_votes=config.stream.max_votes)
        self.scale = RunningCellScale(config.locator)
        self.diameter_px: float | None = None  # the latest frame's expected cell diameter
        self.counter = DifferentialCount()
        self.panel = CountPanelAnnotator(self.counter)
        self.annotators = (BoxAnnotator(), LabelAnnotator(), self.panel)

    def process(self, frame: Frame) -> tuple[np.ndarray, Detections]:
        """Locate, track, classify and count the cells of one frame; return the annotated copy."""
        image_rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)  # the one colour conversion per frame
        self.diameter_px = self.scale.update(image_rgb)
        detections = Detections(locate_cells(image_rgb, self.config.locator, self.diameter_px))
        detections = self.tracker.update(detections, frame.index)
        detections = self.track_classifier.update(detections, image_rgb, frame.index, self.diameter_px)
        self.track_classifier.forget(self.tracker.live_track_ids)
        self.counter.update(detections)
        scene = frame.image_bgr.copy()
        for annotator in self.annotators:
            scene = annotator.annotate(scene, detections)
        return scene, detections

    def summary(self) -> dict:
        return {"cells": self.counter.total, "counts": self.counter.counts(),
                "percent": {k: round(v, 2) for k, v in self.counter.percentages().items()}}


def run_stream(source, pipeline: StreamPipeline, out_dir: Path, *, video: bool = False, display: bool = False,
               progress: bool = True, max_frames: int | None = None,
               on_frame: Callable[[Frame, np.ndarray, Detections], None] | None = None,
               stop: threading.Event | None = None) -> dict:
    """Run ``pipeline`` over ``source`` until it ends, Ctrl-C, ``max_frames`` or ``stop`` is set.

    ``on_frame(frame, annotated_bgr, detections)`` is called after each frame (the web app
    keeps the newest one for the page).

    Writes ``out_dir/cells.csv`` as it goes (flushed per frame), ``out_dir/summary.json``
    atomically at the end, also on interrupt or error (then ``complete`` is false), and
    ``out_dir/annotated.webm`` if ``video``.

    Returns:
        The summary dictionary.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    started, frames, last_frame = time.monotonic(), 0, None
    # The last frames' latencies only, so a stream that runs for days keeps bounded memory.
    latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
    status = {"complete": False, "error": None}
    bar = tqdm(total=getattr(source, "frame_count", None), unit="frame", disable=not progress or source.live)
    fps_times: list[float] = []
    sink_video = VideoSink(out_dir / "annotated.webm", getattr(source, "fps", None) or 30.0) if video else None
    try:
        with CsvSink(out_dir / "cells.csv") as csv_sink:
            for frame in source:
                if stop is not None and stop.is_set():
                    break
                scene, detections = pipeline.process(frame)
                now = time.monotonic()
                latencies_ms.append((now - frame.captured_at) * 1000)
                fps_times = [t for t in fps_times if now - t < 1.0] + [now]
                pipeline.panel.fps = len(fps_times) if now - started > 1.0 else None
                csv_sink.write(frame, detections)
                if sink_video:
                    sink_video.write(scene)
                if display:
                    cv2.imshow("HematoVision", scene)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if on_frame:
                    on_frame(frame, scene, detections)
                frames, last_frame = frames + 1, frame
                bar.update(1)
                if max_frames and frames >= max_frames:
                    break
        status["complete"] = True
    except KeyboardInterrupt:
        status["error"] = "interrupted"
        raise
    except Exception as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        if sink_video:
            sink_video.close()
        if display:
            cv2.destroyAllWindows()
        wall = time.monotonic() - started
        source_error = getattr(source, "error", None)
        summary = {
            "source": source.name, **pipeline.summary(), "frames": frames,
            "duration_s": round(last_frame.timestamp_s, 3) if last_frame else 0.0,
            "wall_s": round(wall, 3), "fps": round(frames / wall, 2) if wall > 0 else 0.0,
            "latency_ms": {"p50": round(float(np.percentile(latencies_ms, 50)), 2),
                           "p95": round(float(np.percentile(latencies_ms, 95)), 2)} if latencies_ms else None,
            "source_fps": getattr(source, "read_fps", None) or getattr(source, "fps", None),
            "complete": status["complete"] and source_error is None, "error": status["error"] or source_error,
        }
        write_json_atomic(out_dir / "summary.json", summary)
    return summary
