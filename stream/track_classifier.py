"""Classify tracks, not frames: each cell is classified when it appears and re-checked a few times."""

from __future__ import annotations

import numpy as np

from hv.classifier import Classifier
from hv.config import LocatorConfig
from hv.labels import NUM_OUTPUTS, PARTIAL_ID, UNIDENTIFIED_ID
from hv.locator import crop_cell
from stream.detections import Detections


class TrackClassifier:
    """Keeps a running mean of class probabilities per track id.

    A track is classified on its first frame where it is whole (``Detections.whole``), then
    every ``recheck_every`` frames until it has ``max_votes`` votes: the mean over several
    views of a cell is steadier than one. A cut view never votes, and a track with no vote
    yet is labelled partial (-2). All crops of a frame that need a vote go to the model in
    one batch. A track whose mean top probability is under ``min_confidence`` is labelled
    unidentified (-1).
    """

    def __init__(self, classifier: Classifier, locator: LocatorConfig, *, min_confidence: float = 0.5,
                 recheck_every: int = 15, max_votes: int = 3):
        self.classifier = classifier
        self.locator = locator
        self.min_confidence = min_confidence
        self.recheck_every = recheck_every
        self.max_votes = max_votes
        self._sums: dict[int, np.ndarray] = {}
        self.last_votes: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # this frame's votes: track -> (crop, probs)
        self._votes: dict[int, int] = {}
        self._last_vote: dict[int, int] = {}

    def _needs_vote(self, track_id: int, frame_index: int) -> bool:
        votes = self._votes.get(track_id, 0)
        if votes == 0:
            return True
        return votes < self.max_votes and frame_index - self._last_vote[track_id] >= self.recheck_every

    def update(self, detections: Detections, image_rgb: np.ndarray, frame_index: int,
               diameter_px: float | None = None) -> Detections:
        """Return ``detections`` with ``label_id`` and ``confidence`` from each track's votes.

        ``diameter_px`` is the frame's expected cell diameter (``hv.locator``); None measures it.
        """
        pending = [i for i, t in enumerate(detections.track_id)
                   if detections.whole[i] and self._needs_vote(int(t), frame_index)]
        self.last_votes = {}
        if pending:
            size = self.classifier.image_size
            crops = np.stack([crop_cell(image_rgb, detections.boxes_xyxy[i], self.locator, size, diameter_px)
                              for i in pending])
            for i, crop, probs in zip(pending, crops, self.classifier.predict(crops)):
                track = int(detections.track_id[i])
                self.last_votes[track] = (crop, probs)
                self._sums[track] = self._sums.get(track, np.zeros(NUM_OUTPUTS, np.float32)) + probs
                self._votes[track] = self._votes.get(track, 0) + 1
                self._last_vote[track] = frame_index
        labels = np.full(len(detections), UNIDENTIFIED_ID, np.int64)
        confidence = np.zeros(len(detections), np.float32)
        for i, track in enumerate(detections.track_id):
            if int(track) not in self._votes:
                labels[i] = PARTIAL_ID
                continue
            mean = self._sums[int(track)] / self._votes[int(track)]
            confidence[i] = mean.max()
            if confidence[i] >= self.min_confidence:
                labels[i] = int(mean.argmax())
        return detections.replace(label_id=labels, confidence=confidence)

    def forget(self, known_track_ids: set[int]) -> None:
        """Drop the votes of tracks the tracker forgot, so memory stays bounded on long runs."""
        for track in [t for t in self._sums if t not in known_track_ids]:
            del self._sums[track], self._votes[track], self._last_vote[track]
