"""Where a stream's results go: the per-cell CSV, the summary JSON, an annotated video."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np

from stream.annotators import name_of
from stream.detections import Detections, Frame
from stream.motion import StagePosition

log = logging.getLogger(__name__)

CSV_COLUMNS = ("frame", "time_s", "track_id", "x", "y", "w", "h", "whole", "label", "confidence",
               "region", "slide_x", "slide_y", "model_sha256", "recoloured")


class CsvSink:
    """One row per cell per frame, flushed every frame so a crash loses nothing written.

    ``x, y, w, h`` are frame pixels; ``slide_x, slide_y`` the box's top-left in its region's slide
    coordinates (``stream.motion``); ``whole`` is 0 for a cell cut by the frame edge (never
    classified); ``model_sha256`` names the model that made the label; ``recoloured`` says which colour
    correction the crops of that label got (``hv.stain``: empty none, ``lamp``, ``stain``).
    """

    def __init__(self, path: str | Path, model_sha256: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.model_sha256 = model_sha256 or ""
        self._file = self.path.open("w", newline="")
        self._writer = csv.writer(self._file)
        self._writer.writerow(CSV_COLUMNS)
        self.rows = 0

    def write(self, frame: Frame, detections: Detections, position: StagePosition | None = None) -> None:
        region, dx, dy = (position.region, position.x, position.y) if position else (0, 0.0, 0.0)
        for box, track, whole, label, conf, recoloured in zip(
                detections.boxes_xyxy, detections.track_id, detections.whole, detections.label_id,
                detections.confidence, detections.recoloured):
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            self._writer.writerow([frame.index, f"{frame.timestamp_s:.3f}", int(track), x1, y1, x2 - x1, y2 - y1,
                                   int(whole), name_of(int(label)), f"{conf:.4f}", region,
                                   f"{box[0] + dx:.1f}", f"{box[1] + dy:.1f}", self.model_sha256, recoloured])
            self.rows += 1
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write to a temporary file and rename: readers never see a half-written summary."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# WebM/VP8 plays in every browser and OpenCV's wheels can write it; their MP4 writer is MPEG-4
# part 2, which browsers do not play.
CODECS = {".webm": "VP80", ".mp4": "mp4v", ".avi": "MJPG"}


class VideoSink:
    """An annotated video; the frame size is fixed by the first frame, later sizes are resized to it."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), fps
        if self.path.suffix not in CODECS:
            raise ValueError(f"{self.path}: unsupported video type; use one of {', '.join(CODECS)}")
        self.codec = CODECS[self.path.suffix]
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def write(self, image_bgr: np.ndarray) -> None:
        if self._writer is None:
            self._size = (image_bgr.shape[1], image_bgr.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.codec), self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cannot write video {self.path} with codec {self.codec!r}")
        if (image_bgr.shape[1], image_bgr.shape[0]) != self._size:
            image_bgr = cv2.resize(image_bgr, self._size)
        self._writer.write(image_bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
