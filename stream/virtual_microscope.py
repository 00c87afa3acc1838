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
DEFECTS = ("blur", "motion", "dark")
# The default pan starts an eighth of the way down (cos(0.7227) = 0.75), where the first sample
# field's cell is in full view, so the demo and a short clip open on a cell that can be classified.
_START_PHASE_Y = 0.7227


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
        pan_px_per_frame: speed of the default pan.
        noise_sigma: sensor noise (grey levels).
        path: (n, 2) top-left corners of the camera window in mosaic pixels, one per frame
            (``serpentine_scan``), instead of the default pan; ``num_frames`` is then its length.
        defects: frame index -> "blur" (out of focus), "motion" (blurred along the pan) or "dark".
        fields: names (stems) of the fields to use, in mosaic order, instead of the first ``max_fields``.
        tile_size: (width, height): each field is cut to this window around its first white cell, so a
            slide of many cells stays small (the counting benchmark's slide).
        border_px: a margin of plain background around the mosaic, so a scan can show the cells at its
            rim whole (the mosaic's own edge would cut them).
    """

    live = True

    def __init__(self, fields_dir: str | Path = DEFAULT_FIELDS, *, frame_size: tuple[int, int] = (640, 480),
                 fps: float = 30.0, num_frames: int | None = 300, seed: int = 0, realtime: bool = False,
                 max_fields: int = 12, pan_px_per_frame: float = 4.0, noise_sigma: float = 3.0,
                 path: np.ndarray | None = None, defects: dict[int, str] | None = None,
                 fields: list[str] | None = None, tile_size: tuple[int, int] | None = None, border_px: int = 0):
        folder = Path(fields_dir)
        images_dir = folder / "JPEGImages" if (folder / "JPEGImages").is_dir() else folder
        boxes_dir = folder / "Annotations" if (folder / "Annotations").is_dir() else folder
        if fields is not None:
            paths = [images_dir / f"{name}.jpg" for name in fields]
            missing = [p.name for p in paths if not p.is_file()]
            if missing:
                raise SourceError(f"virtual microscope: no field {', '.join(missing[:5])} in {images_dir}")
        else:
            paths = sorted(images_dir.glob("*.jpg"))[:max_fields]
        if not paths:
            raise SourceError(f"virtual microscope: no .jpg fields in {images_dir}")
        self.name = f"virtual microscope ({Path(images_dir).name})"  # the folder, not the server's layout
        if path is not None:
            path = np.asarray(path, np.float64).reshape(-1, 2)
            num_frames = len(path)
        unknown = {kind for kind in (defects or {}).values()} - set(DEFECTS)
        if unknown:
            raise ValueError(f"virtual microscope: unknown defects {sorted(unknown)}; use {', '.join(DEFECTS)}")
        self._path, self._defects = path, dict(defects or {})
        self.fps, self.frame_count, self.realtime = fps, num_frames, realtime
        self.frame_size = frame_size
        self._rng = np.random.default_rng(seed)
        self._pan = pan_px_per_frame
        # Stage drift and hand jitter: a few slow sinusoids per axis with seeded phases and periods,
        # a function of the frame index so that render() and truth() always agree.
        self._drift_phase = self._rng.uniform(0, 2 * math.pi, (2, 3))
        self._drift_period = self._rng.uniform(20, 120, (2, 3))
        self._build_mosaic(paths, boxes_dir, read_field_labels(folder), tile_size)
        self.border_px = border_px
        if border_px:
            self._add_border(border_px)
        # Sensor noise drawn once; frames pick one of a few noise images (drawing per frame costs ~5 ms).
        self._noise_pool = []
        for _ in range(4):
            noise = np.empty((frame_size[1], frame_size[0], 3), np.int16)
            cv2.setRNGSeed(int(self._rng.integers(2**31)))
            cv2.randn(noise, 0, noise_sigma)
            self._noise_pool.append(noise)
        self._started = time.monotonic()

    def _build_mosaic(self, paths: list[Path], boxes_dir: Path, labels: dict[str, int],
                      tile_size: tuple[int, int] | None) -> None:
        tiles = [self._tile(path, boxes_dir, labels, tile_size) for path in paths]
        height, width = tiles[0][0].shape[:2]
        columns = max(2, math.ceil(math.sqrt(len(tiles))))
        rows = math.ceil(len(tiles) / columns)
        self.mosaic = np.zeros((rows * height, columns * width, 3), np.uint8)
        boxes, classes = [], []
        # Places beyond the last field (a ragged last row) repeat the first ones, cells and all, so no black shows.
        for i in range(rows * columns):
            image, field_boxes, label = tiles[i % len(tiles)]
            top, left = (i // columns) * height, (i % columns) * width
            self.mosaic[top : top + height, left : left + width] = cv2.resize(image, (width, height))
            sx, sy = width / image.shape[1], height / image.shape[0]
            for box in field_boxes:
                boxes.append(box * [sx, sy, sx, sy] + [left, top, left, top])
                classes.append(label)
        self._cells = np.array(boxes, np.float32).reshape(-1, 4)
        self._cell_labels = np.array(classes, np.int64)

    def _add_border(self, border_px: int) -> None:
        sample = self.mosaic[::4, ::4].reshape(-1, 3)
        bright = sample[sample.sum(axis=1) >= np.median(sample.sum(axis=1))]
        background = [float(v) for v in np.median(bright, axis=0)]  # plasma and glass, not cells
        self.mosaic = cv2.copyMakeBorder(self.mosaic, *(4 * [border_px]), cv2.BORDER_CONSTANT, value=background)
        self._cells = self._cells + border_px

    @staticmethod
    def _tile(path: Path, boxes_dir: Path, labels: dict[str, int],
              tile_size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, int]:
        """A field's image, its white-cell boxes and its class (-1 unless it has one labelled cell)."""
        image = cv2.imread(str(path))
        if image is None:
            raise SourceError(f"virtual microscope: cannot read {path.name}")
        xml = boxes_dir / f"{path.stem}.xml"
        field_boxes = read_voc_boxes(xml) if xml.exists() else np.zeros((0, 4), np.float32)
        label = labels.get(path.stem, UNIDENTIFIED_ID) if len(field_boxes) == 1 else UNIDENTIFIED_ID
        if tile_size is not None and len(field_boxes):
            width, height = tile_size
            cx, cy = (field_boxes[0, :2] + field_boxes[0, 2:]) / 2
            x0 = int(np.clip(round(cx - width / 2), 0, max(0, image.shape[1] - width)))
            y0 = int(np.clip(round(cy - height / 2), 0, max(0, image.shape[0] - height)))
            image = image[y0 : y0 + height, x0 : x0 + width]
            field_boxes = field_boxes - [x0, y0, x0, y0]
            keep = ((field_boxes[:, 2] > 0) & (field_boxes[:, 3] > 0)
                    & (field_boxes[:, 0] < image.shape[1]) & (field_boxes[:, 1] < image.shape[0]))
            field_boxes = field_boxes[keep].clip(0, [image.shape[1], image.shape[0]] * 2)
        return image, np.asarray(field_boxes, np.float32).reshape(-1, 4), label

    @property
    def all_cells(self) -> TrueCells:
        """Every annotated white cell of the mosaic, in mosaic pixels."""
        return TrueCells(self._cells.copy(), self._cell_labels.copy())

    def _viewport(self, index: int) -> tuple[float, float]:
        """Top-left of the camera window: the given path, or a slow Lissajous pan plus a little random drift."""
        if self._path is not None:
            return float(self._path[index, 0]), float(self._path[index, 1])
        width, height = self.frame_size
        span_x = self.mosaic.shape[1] - width
        span_y = self.mosaic.shape[0] - height
        t = index * self._pan / max(span_x, 1)
        drift = [sum(6.0 * math.sin(2 * math.pi * index / period + phase)
                     for period, phase in zip(self._drift_period[axis], self._drift_phase[axis])) for axis in (0, 1)]
        x = float(np.clip(span_x * (0.5 - 0.5 * math.cos(math.pi * t)) + drift[0], 0, span_x))
        y = float(np.clip(span_y * (0.5 - 0.5 * math.cos(math.pi * t * 0.37 + _START_PHASE_Y)) + drift[1], 0, span_y))
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
        defect = self._defects.get(index)
        if defect == "blur":
            focus = 6.0
        frame = cv2.GaussianBlur(frame, (0, 0), focus)
        if defect == "motion":  # a jerk of the stage during the exposure: a 31-px streak along x
            frame = cv2.blur(frame, (31, 1))
        gain = 1.0 + 0.08 * math.sin(index / 55.0)  # lamp flicker and auto-exposure
        if defect == "dark":
            gain = 0.12
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


def serpentine_scan(mosaic_size: tuple[int, int], frame_size: tuple[int, int], speed_px: float, *,
                    row_step_frac: float = 0.5, pan_back_rows: int = 1, jitter_px: float = 2.0,
                    seed: int = 0) -> np.ndarray:
    """A technician's scan of a slide: rows left to right and back, then a pan back along the first rows.

    Args:
        mosaic_size: (width, height) of the slide in pixels.
        frame_size: (width, height) of the camera window.
        speed_px: stage speed in pixels per frame (along rows and between them).
        row_step_frac: rows are this share of the frame height apart, so every cell is whole in some frame.
        pan_back_rows: after the last row, the scan goes back to the start and over this many rows again
            (cells already counted: a count that grows here is wrong).
        jitter_px: hand jitter, a smoothed random walk of about this size added to every position.
        seed: the jitter's seed.

    Returns:
        (n, 2) float top-left corners, within the mosaic.
    """
    (mosaic_w, mosaic_h), (width, height) = mosaic_size, frame_size
    span_x, span_y = mosaic_w - width, mosaic_h - height
    rows = np.arange(0, span_y + 1e-6, row_step_frac * height).tolist()
    if rows[-1] < span_y:
        rows.append(float(span_y))
    waypoints = []
    for i, y in enumerate(rows):
        xs = (0.0, span_x) if i % 2 == 0 else (span_x, 0.0)
        waypoints += [(xs[0], y), (xs[1], y)]
    for y in rows[:pan_back_rows]:  # back over rows already seen, starting from their nearer end
        near = 0.0 if waypoints[-1][0] < span_x / 2 else span_x
        waypoints += [(near, y), (span_x - near, y)]
    path = [np.array(waypoints[0], np.float64)]
    for target in waypoints[1:]:
        start, target = path[-1], np.array(target, np.float64)
        steps = max(1, int(np.ceil(np.hypot(*(target - start)) / speed_px)))
        path += [start + (target - start) * k / steps for k in range(1, steps + 1)]
    path = np.array(path)
    # Hand jitter: white noise smoothed over a few frames (a hand shakes, it does not teleport).
    rng = np.random.default_rng(seed)
    kernel = np.exp(-0.5 * (np.arange(-9, 10) / 3.0) ** 2)
    shake = np.stack([np.convolve(rng.normal(0, 1, len(path)), kernel, mode="same") for _ in range(2)], axis=1)
    path = path + shake * (jitter_px / max(float(shake.std()), 1e-9))
    return np.stack([path[:, 0].clip(0, span_x), path[:, 1].clip(0, span_y)], axis=1)
