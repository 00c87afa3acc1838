"""A virtual microscope: a synthetic live feed that pans across a mosaic of real slide fields.

It imitates what a technician's camera shows while moving the stage: smooth panning with
drift, focus breathing, illumination changes and sensor noise, at a fixed frame rate. It
knows where every annotated white cell is in every frame, and its class where the data
set says so, which makes it the demo's source and the tests' ground truth.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import read_field_labels, read_voc_boxes
from hv.bundled import SAMPLE_FIELDS
from hv.labels import UNIDENTIFIED_ID
from stream.detections import Frame
from stream.sources import ClosingSource, SourceError

log = logging.getLogger(__name__)

DEFAULT_FIELDS = SAMPLE_FIELDS


@dataclass(frozen=True)
class TrueCells:
    """Ground truth of one frame: boxes in frame pixels and class ids (-1: unknown class)."""

    boxes_xyxy: np.ndarray
    label_id: np.ndarray


class VirtualMicroscope(ClosingSource):
    """A seeded synthetic live source over a mosaic of annotated fields.

    Args:
        fields_dir: folder of ``*.jpg`` fields with Pascal VOC ``*.xml`` beside them (or BCCD's
            ``JPEGImages``/``Annotations`` layout); default: the bundled samples.
        frame_size: (width, height) of the camera frame.
        fps: frames per second of the virtual camera.
        num_frames: frames before the feed ends (None: endless).
        seed: makes the pan path, blur, light and noise repeatable.
        realtime: pace frames at ``fps`` like a camera; False yields them as fast as possible.
        max_fields: use at most this many fields for the mosaic.
    """

    live = True

    def __init__(self, fields_dir: str | Path = DEFAULT_FIELDS, *, frame_size: tuple[int, int] = (640, 480),
                 fps: float = 30.0, num_frames: int | None = 300, seed: int = 0, realtime: bool = False,
                 max_fields: int = 12, pan_px_per_frame: float = 4.0, noise_sigma: float = 3.0):
        folder = Path(fields_dir)
        images_dir = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder
        boxes_dir = folder / "Annotations" if (folder / "Annotations").is_dir() else folder
        paths = sorted(images_dir.glob("*.jpg"))[:max_fields]
        if not paths:
            raise SourceError(f"virtual microscope: no .jpg fields in {images_dir}")
        self.name = f"virtual microscope ({Path(images_dir).name})"  # the folder, not the server's layout
        self.fps, self.frame_count, self.realtime = fps, num_frames, realtime
        self.frame_size = frame_size
        self._rng = np.random.default_rng(seed)
        self._pan = pan_px_per_frame
        # Stage drift and hand jitter: a few slow sinusoids per axis with seeded phases and periods,
        # a function of the frame index so that render() and truth() always agree.
        self._drift_phase = self._rng.uniform(0, 2 * math.pi, (2, 3))
        self._drift_period = self._rng.uniform(20, 120, (2, 3))
        self._build_mosaic(paths, boxes_dir, read_field_labels(folder))
        # Sensor noise drawn once; frames pick one of a few noise images (drawing per frame costs ~5 ms).
        self._noise_pool = []
        for _ in range(4):
            noise = np.empty((frame_size[1], frame_size[0], 3), np.int16)
            cv2.setRNGSeed(int(self._rng.integers(2**31)))
            cv2.randn(noise, 0, noise_sigma)
            self._noise_pool.append(noise)
        self._started = time.monotonic()

    def _build_mosaic(self, paths: list[Path], boxes_dir: Path, labels: dict[str, int]) -> None:
        images = [cv2.imread(str(p)) for p in paths]
        height, width = images[0].shape[:2]
        columns = max(2, math.ceil(math.sqrt(len(images))))
        rows = math.ceil(len(images) / columns)
        self.mosaic = np.zeros((rows * height, columns * width, 3), np.uint8)
        boxes, classes = [], []
        for i, (path, image) in enumerate(zip(paths, images)):
            image = cv2.resize(image, (width, height))
            top, left = (i // columns) * height, (i % columns) * width
            self.mosaic[top : top + height, left : left + width] = image
            xml = boxes_dir / f"{path.stem}.xml"
            field_boxes = read_voc_boxes(xml) if xml.exists() else np.zeros((0, 4), np.float32)
            label = labels.get(path.stem, UNIDENTIFIED_ID) if len(field_boxes) == 1 else UNIDENTIFIED_ID
            for box in field_boxes:
                boxes.append(box + [left, top, left, top])
                classes.append(label)
        # Empty mosaic tiles (a ragged last row) repeat the first field, so no black shows.
        for i in range(len(images), rows * columns):
            top, left = (i // columns) * height, (i % columns) * width
            self.mosaic[top : top + height, left : left + width] = images[0]
        self._cells = np.array(boxes, np.float32).reshape(-1, 4)
        self._cell_labels = np.array(classes, np.int64)

    @property
    def all_cells(self) -> TrueCells:
        """Every annotated white cell of the mosaic, in mosaic pixels."""
        return TrueCells(self._cells.copy(), self._cell_labels.copy())

    def _viewport(self, index: int) -> tuple[float, float]:
        """Top-left of the camera window: a slow Lissajous pan plus a little random drift."""
        width, height = self.frame_size
        span_x = self.mosaic.shape[1] - width
        span_y = self.mosaic.shape[0] - height
        t = index * self._pan / max(span_x, 1)
        drift = [sum(6.0 * math.sin(2 * math.pi * index / period + phase)
                     for period, phase in zip(self._drift_period[axis], self._drift_phase[axis])) for axis in (0, 1)]
        x = float(np.clip(span_x * (0.5 - 0.5 * math.cos(math.pi * t)) + drift[0], 0, span_x))
        y = float(np.clip(span_y * (0.5 - 0.5 * math.cos(math.pi * t * 0.37)) + drift[1], 0, span_y))
        return x, y

    def truth(self, index: int) -> TrueCells:
        """The annotated white cells fully or partly in frame ``index``, in frame pixels (clipped)."""
        x, y = self._viewport(index)
        width, height = self.frame_size
        boxes = self._cells - np.array([x, y, x, y], np.float32)
        inside = (boxes[:, 2] > 0) & (boxes[:, 0] < width) & (boxes[:, 3] > 0) & (boxes[:, 1] < height)
        boxes = boxes[inside]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        return TrueCells(boxes, self._cell_labels[inside])

    def render(self, index: int) -> np.ndarray:
        """Frame ``index`` as the camera would see it (BGR)."""
        x, y = self._viewport(index)
        width, height = self.frame_size
        shift = np.float32([[1, 0, -x], [0, 1, -y]])
        frame = cv2.warpAffine(self.mosaic, shift, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT_101)
        focus = 0.6 + 0.6 * (1 + math.sin(index / 40.0))  # focus breathes between sharp and soft
        frame = cv2.GaussianBlur(frame, (0, 0), focus)
        gain = 1.0 + 0.08 * math.sin(index / 55.0)  # lamp flicker and auto-exposure
        frame = cv2.convertScaleAbs(frame, alpha=gain)
        noise = self._noise_pool[int(self._rng.integers(len(self._noise_pool)))]
        return cv2.add(frame, noise, dtype=cv2.CV_8U)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while self.frame_count is None or index < self.frame_count:
            if self.realtime:
                delay = self._started + index / self.fps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            image = self.render(index)
            yield Frame(image, index, index / self.fps, time.monotonic())
            index += 1
