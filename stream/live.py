"""A live session for the web page: the stream pipeline in a background thread.

The thread runs ``run_stream`` over a source and keeps only the newest annotated frame,
so the page, polling at its own pace, always shows the present and lag never grows.
It also keeps one crop per tracked cell for the review gallery.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hv.classifier import Classifier
from hv.config import Config
from hv.locator import crop_cell
from stream.detections import Detections, Frame
from stream.pipeline import StreamPipeline, run_stream

log = logging.getLogger(__name__)

GALLERY_LIMIT = 300
GALLERY_CROP_PX = 96


@dataclass(frozen=True)
class CellRecord:
    """One tracked cell for the review screen."""

    track_id: int
    crop_rgb: np.ndarray
    label_id: int
    confidence: float


class LiveSession:
    """Runs one source through the pipeline until it ends or ``stop()``; thread-safe snapshots."""

    def __init__(self, source, classifier: Classifier, config: Config, out_dir: Path | None = None):
        self.source = source
        self.pipeline = StreamPipeline(classifier, config)
        self._own_out_dir = out_dir is None  # a temporary folder of its own, removed by close()
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="hv-live-"))
        self._config = config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._latest_rgb: np.ndarray | None = None
        self._cells: dict[int, CellRecord] = {}
        self._counts: dict[str, int] = self.pipeline.counter.counts()
        self.summary: dict | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="hv live session", daemon=True)
        self._thread.start()

    def _on_frame(self, frame: Frame, scene_bgr: np.ndarray, detections: Detections) -> None:
        scene_rgb = cv2.cvtColor(scene_bgr, cv2.COLOR_BGR2RGB)
        new = [i for i, t in enumerate(detections.track_id) if int(t) not in self._cells]
        crops = {}
        if new and len(self._cells) < GALLERY_LIMIT:
            image_rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)
            crops = {i: crop_cell(image_rgb, detections.boxes_xyxy[i], self._config.locator, GALLERY_CROP_PX,
                                  self.pipeline.diameter_px)
                     for i in new}
        with self._lock:
            self._latest_rgb = scene_rgb
            self._counts = self.pipeline.counter.counts()  # read here, on the pipeline's thread
            for i, track in enumerate(detections.track_id):
                track = int(track)
                crop = crops.get(i, self._cells[track].crop_rgb if track in self._cells else None)
                if crop is not None:
                    self._cells[track] = CellRecord(track, crop, int(detections.label_id[i]),
                                                    float(detections.confidence[i]))

    def _run(self) -> None:
        try:
            self.summary = run_stream(self.source, self.pipeline, self.out_dir, progress=False,
                                      on_frame=self._on_frame, stop=self._stop)
        except Exception as exc:  # shown on the page; the summary on disk says the same
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("live session failed")
        finally:
            self.source.close()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called (the user stopped it, rather than the source ending)."""
        return self._stop.is_set()

    def latest_frame(self) -> np.ndarray | None:
        with self._lock:
            return self._latest_rgb

    def cells(self) -> list[CellRecord]:
        with self._lock:
            return list(self._cells.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop within about ``timeout_s``, also when the source is stalled, and release its device."""
        self._stop.set()
        self.source.close()  # ends the source's iterator even if no frame ever comes again
        self._thread.join(timeout=timeout_s)

    def close(self) -> None:
        """Stop, and remove the temporary output folder if the session made one (a page closed)."""
        self.stop()
        if self._own_out_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)
