"""The one type that flows through the stream: the white cells of one frame, as parallel arrays."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from hv.field_of_view import FieldOfView, whole_in_view
from hv.labels import UNIDENTIFIED_ID
from hv.stain import AS_IS

UNTRACKED_ID = -1
RECOLOURED_DTYPE = "<U5"  # hv.stain's AS_IS, LAMP, STAIN


@dataclass(frozen=True)
class Frame:
    """One picture from a source, with where and when it was taken."""

    image_bgr: np.ndarray  # (H, W, 3) uint8, OpenCV's channel order
    index: int  # 0-based position in the source
    timestamp_s: float  # seconds since the source started (media time for files)
    captured_at: float = 0.0  # time.monotonic() when read, for latency


@dataclass(frozen=True)
class Detections:
    """White cells of one frame.

    Attributes:
        boxes_xyxy: (n, 4) float32 ``[x1, y1, x2, y2]`` in frame pixels.
        confidence: (n,) float32 probability of ``label_id`` (0 while unclassified).
        label_id: (n,) int index into ``hv.labels.OUTPUT_NAMES`` (4 = "other"); -1 = unidentified / not yet classified.
        track_id: (n,) int; -1 = not tracked yet.
        whole: (n,) bool; False for a cell cut by the frame edge (``mark_cut_cells``), which is never classified.
        recoloured: (n,) str; which colour correction the crops of the cell's label got (``hv.stain``: "" none,
            "lamp" the plasma replaced, "stain" the colours turned; the strongest among its votes).

    Stages return new objects (``dataclasses.replace``) and never change their input.
    """

    boxes_xyxy: np.ndarray
    confidence: np.ndarray = field(default=None)
    label_id: np.ndarray = field(default=None)
    track_id: np.ndarray = field(default=None)
    whole: np.ndarray = field(default=None)
    recoloured: np.ndarray = field(default=None)

    def __post_init__(self):
        boxes = np.asarray(self.boxes_xyxy, np.float32).reshape(-1, 4)
        n = len(boxes)
        defaults = {"confidence": (np.zeros(n, np.float32), np.float32),
                    "label_id": (np.full(n, UNIDENTIFIED_ID, np.int64), np.int64),
                    "track_id": (np.full(n, UNTRACKED_ID, np.int64), np.int64),
                    "whole": (np.ones(n, bool), bool),
                    "recoloured": (np.full(n, AS_IS, RECOLOURED_DTYPE), RECOLOURED_DTYPE)}
        object.__setattr__(self, "boxes_xyxy", boxes)
        for name, (default, dtype) in defaults.items():
            value = getattr(self, name)
            value = default if value is None else np.asarray(value, dtype).reshape(-1)
            if len(value) != n:
                raise ValueError(f"Detections.{name} has {len(value)} entries for {n} boxes")
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32))

    def __len__(self) -> int:
        return len(self.boxes_xyxy)

    def __getitem__(self, mask) -> Detections:
        return Detections(self.boxes_xyxy[mask], self.confidence[mask], self.label_id[mask], self.track_id[mask],
                          self.whole[mask], self.recoloured[mask])

    def replace(self, **changes) -> Detections:
        return dataclasses.replace(self, **changes)


def mark_cut_cells(detections: Detections, frame_size: tuple[int, int], margin_px: float,
                   view: FieldOfView | None = None) -> Detections:
    """Set ``whole`` False for boxes within ``margin_px`` of the edge of a ``(width, height)`` frame, or of a round
    field stop's shadow (``view``: the view's edge cuts too; ``hv.field_of_view.whole_in_view``)."""
    return detections.replace(whole=whole_in_view(detections.boxes_xyxy, frame_size, margin_px, view))
