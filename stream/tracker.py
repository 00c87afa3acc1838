"""Slide tracker: one id per physical cell, kept in slide coordinates so a cell seen again is the same cell."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hv.annotations import inside_share, iou_matrix
from stream.detections import Detections
from stream.motion import StagePosition


def _centres(boxes_xyxy: np.ndarray) -> np.ndarray:
    return (boxes_xyxy[:, :2] + boxes_xyxy[:, 2:]) / 2


def _area(box_xyxy: np.ndarray) -> float:
    return float(max(0.0, box_xyxy[2] - box_xyxy[0]) * max(0.0, box_xyxy[3] - box_xyxy[1]))


@dataclass
class _Track:
    track_id: int
    box_xyxy: np.ndarray  # slide coordinates of the region it was seen in
    last_seen: int
    ever_whole: bool
    extent_xyxy: np.ndarray | None = None  # slide coordinates of the largest whole box it was seen with


class SlideTracker:
    """Greedy one-to-one matching of this frame's boxes to the region's cells by IoU, in slide coordinates.

    Cells do not move on a slide; the stage does. With each box shifted by the frame's stage
    position (``stream.motion``), a cell has one place, whichever frame shows it. A track unseen
    for ``max_missing`` frames is no longer *live*, but it is *remembered* (up to
    ``max_remembered`` per region): when the view comes back over it, after a pan back, a jerk or
    frames the locator missed, the box there takes its id again and the cell is not counted twice.

    A box that overlaps no cell enough may still be another part of one: in a pale stain the
    locator can find a nucleus's lobes apart, one here and another a few frames on. So a box
    left over takes the nearest cell left over whose centre lies within ``max_centre_frac`` of
    the expected cell diameter of its own (cells lie about a diameter apart or more).

    Both passes give a cell one box a frame. An eosinophil's two lobes can lie so far apart that the
    locator finds them as two boxes (in some frames; in others as one box round the whole cell), and
    the second box would start a new track and be counted. So a track remembers its *extent*, the
    largest whole box it was seen with, and a box still left over that lies mostly inside
    (``part_of_cell`` of its area) a cell's extent belongs to that cell: it continues the cell if no box
    has yet this frame (a lobe alone, as the stage brings the cell back), and if one has, it is another
    part of the cell and is dropped from the frame's detections. Two distinct cells side by side do not
    lie inside each other's box (BCCD's nearest pair overlaps 0.45 of the smaller: BENCHMARKS.md, "An
    eosinophil's lobes").

    A remembered box is clipped to the present view before comparing, so a cell entering or
    leaving at the edge still matches its own whole box. A track keeps its last whole box once
    it has one (``Detections.whole``). A new region (motion lost) forgets the old one's cells:
    their coordinates cannot be related any more.

    Example:
        tracker = SlideTracker()
        detections = tracker.update(detections, frame_index=0, position=position, frame_size=(640, 480),
                                    diameter_px=150.0)
    """

    def __init__(self, min_iou: float = 0.3, max_missing: int = 10, max_remembered: int = 20_000,
                 max_centre_frac: float = 0.5, part_of_cell: float = 0.75):
        self.min_iou = min_iou
        self.max_centre_frac = max_centre_frac
        self.part_of_cell = part_of_cell
        self.max_missing = max_missing
        self.max_remembered = max_remembered
        self._tracks: list[_Track] = []
        self._region: int | None = None
        self._next_id = 0
        self._frame_index = 0

    def update(self, detections: Detections, frame_index: int, position: StagePosition | None = None,
               frame_size: tuple[int, int] | None = None, diameter_px: float | None = None) -> Detections:
        """Return ``detections`` with ``track_id`` set; cells never seen in this region get new ids.

        Boxes that are another part of a cell matched in this frame are left out of what is returned.

        Without ``position`` the frame is taken to be where the last one was (a fixed stage); without
        ``diameter_px`` (the frame's expected cell diameter) boxes are matched by overlap only.
        """
        self._frame_index = frame_index
        offset = np.zeros(4, np.float32)
        if position is not None:
            if position.region != self._region:
                self._tracks, self._region = [], position.region
            offset = np.array([position.x, position.y, position.x, position.y], np.float32)
        boxes = detections.boxes_xyxy + offset
        ids = np.full(len(detections), -1, np.int64)
        parts = np.zeros(len(detections), bool)
        if self._tracks and len(detections):
            in_view = self._track_boxes_in_view(offset, frame_size)
            ious = iou_matrix(boxes, in_view)
            taken = np.zeros(len(self._tracks), bool)
            while ious.size and ious.max() >= self.min_iou:
                i, j = np.unravel_index(ious.argmax(), ious.shape)
                self._take(i, j, ids, taken, boxes, detections, frame_index)
                ious[i, :] = -1
                ious[:, j] = -1
            if diameter_px and self.max_centre_frac > 0 and (ids < 0).any():
                distance = np.linalg.norm(_centres(boxes)[:, None] - _centres(in_view)[None], axis=-1)
                distance[ids >= 0, :] = np.inf
                # Out of view, a remembered box is clipped to a line along the edge: not a cell seen here.
                distance[:, taken | (in_view[:, 2] <= in_view[:, 0]) | (in_view[:, 3] <= in_view[:, 1])] = np.inf
                while distance.size and distance.min() <= self.max_centre_frac * diameter_px:
                    i, j = np.unravel_index(distance.argmin(), distance.shape)
                    self._take(i, j, ids, taken, boxes, detections, frame_index)
                    distance[i, :] = np.inf
                    distance[:, j] = np.inf
            parts = self._match_by_extent(boxes, ids, taken, detections, frame_index)
        for i in np.flatnonzero((ids < 0) & ~parts):
            ids[i] = self._next_id
            whole = bool(detections.whole[i])
            self._tracks.append(_Track(self._next_id, boxes[i], frame_index, whole, boxes[i] if whole else None))
            self._next_id += 1
        if len(self._tracks) > self.max_remembered:  # the longest unseen go first
            self._tracks.sort(key=lambda t: t.last_seen)
            del self._tracks[: len(self._tracks) - self.max_remembered]
        return detections.replace(track_id=ids)[~parts]

    def _match_by_extent(self, boxes: np.ndarray, ids: np.ndarray, taken: np.ndarray, detections: Detections,
                         frame_index: int) -> np.ndarray:
        """Boxes still left over that lie mostly inside a cell's extent belong to that cell: each continues the
        free cell it lies most inside, or, with only cells already matched in this frame around it, is a part
        of one. Returns (n,) bool: the parts, to leave out of the frame's detections."""
        parts = np.zeros(len(boxes), bool)
        if self.part_of_cell <= 0 or not (ids < 0).any():  # most frames: every box has its cell
            return parts
        rows = [j for j, track in enumerate(self._tracks) if track.extent_xyxy is not None]
        if not rows:
            return parts
        inside = inside_share(boxes, np.stack([self._tracks[j].extent_xyxy for j in rows]))
        inside[ids >= 0, :] = 0
        inside[inside < self.part_of_cell] = 0
        free = ~taken[rows]
        shares = np.where(free[None], inside, 0)
        while shares.size and shares.max() > 0:
            i, k = np.unravel_index(shares.argmax(), shares.shape)
            self._take(i, rows[k], ids, taken, boxes, detections, frame_index)
            shares[i, :] = 0
            shares[:, k] = 0
            inside[i, :] = 0
        return (ids < 0) & (inside.max(axis=1) > 0)

    def _take(self, i: int, j: int, ids: np.ndarray, taken: np.ndarray, boxes: np.ndarray, detections: Detections,
              frame_index: int) -> None:
        """Box ``i`` of this frame continues track ``j``."""
        self._see(self._tracks[j], boxes[i], bool(detections.whole[i]), frame_index)
        ids[i] = self._tracks[j].track_id
        taken[j] = True

    @staticmethod
    def _see(track: _Track, box: np.ndarray, whole: bool, frame_index: int) -> None:
        if whole or not track.ever_whole:  # a cut view never replaces a whole one
            track.box_xyxy = box
        if whole and (track.extent_xyxy is None or _area(box) > _area(track.extent_xyxy)):
            track.extent_xyxy = box
        track.ever_whole |= whole
        track.last_seen = frame_index

    def _track_boxes_in_view(self, offset: np.ndarray, frame_size: tuple[int, int] | None) -> np.ndarray:
        boxes = np.stack([t.box_xyxy for t in self._tracks])
        if frame_size is None:
            return boxes
        x0, y0 = offset[0], offset[1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(x0, x0 + frame_size[0])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(y0, y0 + frame_size[1])
        return boxes

    @property
    def live_track_ids(self) -> set[int]:
        """Tracks seen within the last ``max_missing`` frames."""
        return {t.track_id for t in self._tracks if self._frame_index - t.last_seen <= self.max_missing}

    @property
    def known_track_ids(self) -> set[int]:
        """Every track of the present region, live or remembered."""
        return {t.track_id for t in self._tracks}
