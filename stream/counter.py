"""The running differential count: each track counted once, under its current label."""

from __future__ import annotations

from collections import Counter

from hv.labels import CLASS_NAMES, OTHER_ID, OTHER_NAME, UNIDENTIFIED_ID
from stream.detections import Detections

UNIDENTIFIED = "unidentified"


class DifferentialCount:
    """Counts cells (tracks), not detections; a track's label may still change with more votes.

    Cells flagged "other" (none of the four) and unidentified cells are counted apart and
    stay out of the differential's percentages.
    """

    def __init__(self):
        self._label_of_track: dict[int, int] = {}

    def update(self, detections: Detections) -> None:
        for track, label in zip(detections.track_id, detections.label_id):
            self._label_of_track[int(track)] = int(label)

    def counts(self) -> dict[str, int]:
        """Cells per class name, then ``other`` and ``unidentified``."""
        tally = Counter(self._label_of_track.values())
        counts = {name: tally.get(i, 0) for i, name in enumerate(CLASS_NAMES)}
        counts[OTHER_NAME] = tally.get(OTHER_ID, 0)
        counts[UNIDENTIFIED] = tally.get(UNIDENTIFIED_ID, 0)
        return counts

    def percentages(self) -> dict[str, float]:
        """Share of each class among the identified cells (the differential), in percent."""
        counts = self.counts()
        identified = sum(counts[name] for name in CLASS_NAMES)
        return {name: (100.0 * counts[name] / identified if identified else 0.0) for name in CLASS_NAMES}

    @property
    def total(self) -> int:
        return len(self._label_of_track)
