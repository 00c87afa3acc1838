"""Classify tracks, not frames: each cell is classified when it appears and re-checked a few times."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from hv.classifier import Classifier
from hv.config import LocatorConfig
from hv.labels import PARTIAL_ID, UNIDENTIFIED_ID
from hv.locator import cell_diameter_px, crop_cell_recoloured
from hv.stain import AS_IS, LAMP, STAIN
from stream.detections import Detections

# A cell's votes may rest on crops corrected differently (the lamp part near a bright edge, say): the
# strongest correction among them is the one reported.
_STRENGTH = {AS_IS: 0, LAMP: 1, STAIN: 2}


class _View(NamedTuple):
    """One vote of a track: a view of the cell and what the classifier said of it."""

    clearance_px: float  # how far the box kept from the nearest frame edge
    clear: bool  # at least clear_by cell diameters from every edge
    frame_index: int
    probs: np.ndarray
    recoloured: str  # the crop's colour correction (hv.stain)


class TrackClassifier:
    """Keeps each track's votes (class probabilities from one view) and labels it with their mean.

    A track is classified on its first frame where it is whole (``Detections.whole``), then
    every ``recheck_every`` frames until it has ``max_votes`` votes: the mean over several
    views of a cell is steadier than one. A cut view never votes, and a track with no vote
    yet is labelled partial (-2). All crops of a frame that need a vote go to the model in
    one batch. A track whose mean top probability is under ``min_confidence`` is labelled
    unidentified (-1).

    Views clear of the frame edge outvote views near it. The locator's box can miss part of a
    cell (an eosinophil's pale cytoplasm), so a view that only just keeps the edge margin may
    still show a cut cell. A view whose box keeps ``clear_by`` cell diameters from every edge
    is clear (the annotated BCCD cells reach at most 0.32 diameters beyond the located box:
    BENCHMARKS.md). A track's first clear view votes at once, and its earlier views nearer
    the edge are dropped; after that only clear views vote. A cell that is never seen clear
    keeps the votes of its views near the edge, as before. So a cell first classified as it
    entered the view is relabelled once the stage brings it clear, and views near the edge as
    it leaves do not vote.

    Each vote remembers which colour correction its crop got (``hv.stain``); the detections
    carry the strongest among a track's kept votes (``Detections.recoloured``).
    """

    def __init__(self, classifier: Classifier, locator: LocatorConfig, *, min_confidence: float = 0.5,
                 recheck_every: int = 15, max_votes: int = 3, clear_by: float = 0.35):
        self.classifier = classifier
        self.locator = locator
        self.min_confidence = min_confidence
        self.recheck_every = recheck_every
        self.max_votes = max_votes
        self.clear_by = clear_by
        self._views: dict[int, list[_View]] = {}  # track -> its kept votes, clearest view first
        self.last_votes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # this frame's votes: track -> (crop, probs)
        self._last_vote: dict[int, int] = {}

    def _needs_vote(self, track_id: int, frame_index: int, clear: bool) -> bool:
        views = self._views.get(track_id)
        if not views:
            return True
        if views[0].clear:  # the clearest view is clear: the track has been seen clear
            if not clear:
                return False
        elif clear:
            return True  # the first clear view: at once
        return len(views) < self.max_votes and frame_index - self._last_vote[track_id] >= self.recheck_every

    def _vote(self, track_id: int, clearance_px: float, clear: bool, frame_index: int, probs: np.ndarray,
              recoloured: str) -> None:
        views = self._views.setdefault(track_id, [])
        if clear and not (views and views[0].clear):
            views.clear()  # the views near the edge give way to the first clear one
        views.append(_View(clearance_px, clear, frame_index, probs, recoloured))
        views.sort(key=lambda view: -view.clearance_px)
        self._last_vote[track_id] = frame_index

    def voted_frames(self, track_id: int) -> list[int]:
        """The frames of the views a track's label now rests on (for benchmarks and review)."""
        return [view.frame_index for view in self._views.get(track_id, [])]

    def recoloured(self, track_id: int) -> str:
        """The strongest colour correction among the crops a track's label rests on (``hv.stain``)."""
        return max((view.recoloured for view in self._views.get(track_id, [])), key=_STRENGTH.__getitem__,
                   default=AS_IS)

    def update(self, detections: Detections, image_rgb: np.ndarray, frame_index: int,
               diameter_px: float | None = None) -> Detections:
        """Return ``detections`` with ``label_id`` and ``confidence`` from each track's votes.

        ``diameter_px`` is the frame's expected cell diameter (``hv.locator``); None measures it.
        """
        if diameter_px is None and len(detections):
            diameter_px = cell_diameter_px(image_rgb, self.locator)
        height, width = image_rgb.shape[:2]
        boxes = detections.boxes_xyxy
        # How far each box keeps from the nearest frame edge, in pixels.
        clearance = np.minimum(np.minimum(boxes[:, 0], boxes[:, 1]),
                               np.minimum(width - boxes[:, 2], height - boxes[:, 3]))
        clear = clearance >= self.clear_by * diameter_px if len(detections) else np.zeros(0, bool)
        pending = [i for i, t in enumerate(detections.track_id)
                   if detections.whole[i] and self._needs_vote(int(t), frame_index, bool(clear[i]))]
        self.last_votes = {}
        if pending:
            size = self.classifier.image_size
            cut = [crop_cell_recoloured(image_rgb, detections.boxes_xyxy[i], self.locator, size, diameter_px)
                   for i in pending]
            crops = np.stack([crop for crop, _ in cut])
            for i, (crop, recoloured), probs in zip(pending, cut, self.classifier.predict(crops)):
                track = int(detections.track_id[i])
                self.last_votes[track] = (crop, probs)
                self._vote(track, float(clearance[i]), bool(clear[i]), frame_index, probs, recoloured)
        labels = np.full(len(detections), UNIDENTIFIED_ID, np.int64)
        confidence = np.zeros(len(detections), np.float32)
        recoloured = detections.recoloured.copy()
        for i, track in enumerate(detections.track_id):
            views = self._views.get(int(track))
            if not views:
                labels[i] = PARTIAL_ID
                continue
            recoloured[i] = self.recoloured(int(track))
            mean = np.mean([view.probs for view in views], axis=0)
            confidence[i] = mean.max()
            if confidence[i] >= self.min_confidence:
                labels[i] = int(mean.argmax())
        return detections.replace(label_id=labels, confidence=confidence, recoloured=recoloured)

    def forget(self, known_track_ids: set[int]) -> None:
        """Drop the votes of tracks the tracker forgot, so memory stays bounded on long runs."""
        for track in [t for t in self._views if t not in known_track_ids]:
            del self._views[track], self._last_vote[track]
