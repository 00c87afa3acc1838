"""IoU tracker: a cell that stays in view keeps one track id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hv.annotations import iou_matrix
from stream.detections import Detections


@dataclass
class _Track:
    track_id: int
    box_xyxy: np.ndarray
    last_seen: int


class IouTracker:
    """Greedy one-to-one matching of this frame's boxes to live tracks by IoU.

    Cells drift slowly under a microscope (the stage moves, the cell does not), so
    overlap with the last box is enough; a track survives ``max_missing`` frames unseen
    (a blurred frame, a locator miss) before it ends.

    Example:
        tracker = IouTracker()
        detections = tracker.update(detections, frame_index=0)
    """

    def __init__(self, min_iou: float = 0.3, max_missing: int = 10):
        self.min_iou = min_iou
        self.max_missing = max_missing
        self._tracks: list[_Track] = []
        self._next_id = 0

    def update(self, detections: Detections, frame_index: int) -> Detections:
        """Return ``detections`` with ``track_id`` set; new cells get new ids."""
        self._tracks = [t for t in self._tracks if frame_index - t.last_seen <= self.max_missing]
        ids = np.full(len(detections), -1, np.int64)
        if self._tracks and len(detections):
            ious = iou_matrix(detections.boxes_xyxy, np.stack([t.box_xyxy for t in self._tracks]))
            while ious.size and ious.max() >= self.min_iou:
                i, j = np.unravel_index(ious.argmax(), ious.shape)
                ids[i] = self._tracks[j].track_id
                self._tracks[j].box_xyxy = detections.boxes_xyxy[i]
                self._tracks[j].last_seen = frame_index
                ious[i, :] = -1
                ious[:, j] = -1
        for i in np.flatnonzero(ids < 0):
            ids[i] = self._next_id
            self._tracks.append(_Track(self._next_id, detections.boxes_xyxy[i], frame_index))
            self._next_id += 1
        return detections.replace(track_id=ids)

    @property
    def live_track_ids(self) -> set[int]:
        return {t.track_id for t in self._tracks}
