"""The running differential count: each physical cell counted once, from a whole view, under its current label."""

from __future__ import annotations

import math
from collections import Counter

from hv.labels import CLASS_NAMES, OTHER_ID, OTHER_NAME, PARTIAL_ID, UNIDENTIFIED_ID
from hv.stain import AS_IS, LAMP, STAIN
from stream.detections import Detections

UNIDENTIFIED = "unidentified"
PARTIAL = "partial"
EXTRA_NAMES = (OTHER_NAME, UNIDENTIFIED, PARTIAL)  # counted apart, never in the differential's percentages


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n, in percent; (0, 0) when n is 0.

    Cells of one smear are (nearly) independent draws, unlike augmented copies of one image,
    and the Wilson interval stays inside 0-100 % and honest for small counts.
    """
    if n == 0:
        return 0.0, 0.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


class DifferentialCount:
    """Counts cells (tracks), not detections; a track's label may still change with more votes.

    A track enters the count once it has been classified, which happens only from a whole
    view (``TrackClassifier``); a track seen only cut by the frame edge is counted apart as
    "partial" until it is seen whole. Cells flagged "other" (none of the four) and
    unidentified cells are counted apart too and stay out of the differential's percentages.
    With a ``target`` (cells of the four classes), the differential is complete once it is
    reached: like a technician's 100-cell count, no new cell is added after that.
    """

    def __init__(self, target: int = 0, check_below: float = 0.7):
        self.target = target
        self.check_below = check_below  # a cell under this confidence is "to check" (stream.check_below)
        self._label_of_track: dict[int, int] = {}
        self._confidence_of_track: dict[int, float] = {}  # the label's mean vote
        self._recoloured_tracks: dict[int, str] = {}  # counted cells whose crops got a colour correction (hv.stain)
        self._partial_tracks: set[int] = set()
        self._corrected: set[int] = set()  # labels a user set; later votes do not change them
        self.complete = False

    def update(self, detections: Detections) -> None:
        for track, label, confidence, recoloured in zip(detections.track_id, detections.label_id,
                                                        detections.confidence, detections.recoloured):
            track, label = int(track), int(label)
            if label == PARTIAL_ID:
                self._partial_tracks.add(track)
            elif track in self._corrected:
                continue
            elif track in self._label_of_track or not self.complete:
                self._label_of_track[track] = label
                self._confidence_of_track[track] = float(confidence)
                self._partial_tracks.discard(track)
                if recoloured != AS_IS:
                    self._recoloured_tracks[track] = str(recoloured)
                else:
                    self._recoloured_tracks.pop(track, None)
        if self.target and self.identified >= self.target:
            self.complete = True

    def relabel(self, track_id: int, label_id: int) -> None:
        """A user's correction of one counted cell's label; it stands over the classifier's later votes."""
        if track_id not in self._label_of_track:
            raise KeyError(f"cell #{track_id} is not in the count")
        self._label_of_track[track_id] = label_id
        self._corrected.add(track_id)

    def counts(self) -> dict[str, int]:
        """Cells per class name, then ``other``, ``unidentified`` and ``partial``."""
        tally = Counter(self._label_of_track.values())
        counts = {name: tally.get(i, 0) for i, name in enumerate(CLASS_NAMES)}
        counts[OTHER_NAME] = tally.get(OTHER_ID, 0)
        counts[UNIDENTIFIED] = tally.get(UNIDENTIFIED_ID, 0)
        counts[PARTIAL] = len(self._partial_tracks)
        return counts

    @property
    def corrected(self) -> int:
        """Cells whose label a user set."""
        return len(self._corrected)

    @property
    def identified(self) -> int:
        """Cells in the differential: classified as one of the four classes."""
        return sum(1 for label in self._label_of_track.values() if 0 <= label < len(CLASS_NAMES))

    def percentages(self) -> dict[str, float]:
        """Share of each class among the identified cells (the differential), in percent."""
        counts, identified = self.counts(), self.identified
        return {name: (100.0 * counts[name] / identified if identified else 0.0) for name in CLASS_NAMES}

    def intervals(self) -> dict[str, tuple[float, float]]:
        """95 % interval of each class's share, in percent (``wilson_interval``)."""
        counts, identified = self.counts(), self.identified
        return {name: wilson_interval(counts[name], identified) for name in CLASS_NAMES}

    def label_of(self, track_id: int) -> int | None:
        return self._label_of_track.get(track_id)

    def confidence_of(self, track_id: int) -> float | None:
        """The mean vote of a counted cell's label (as last classified; a correction does not change it)."""
        return self._confidence_of_track.get(track_id)

    def recoloured(self) -> dict[str, int]:
        """Counted cells whose label rests on crops given the training labs' plasma (``lamp``) or colours
        (``stain``): many of them say the microscope is unlike the training labs' (``hv.stain``)."""
        tally = Counter(self._recoloured_tracks.values())
        return {LAMP: tally.get(LAMP, 0), STAIN: tally.get(STAIN, 0)}

    @property
    def to_check(self) -> int:
        """Counted cells under ``check_below`` that no user has corrected yet (the review page's "check")."""
        return sum(1 for track, confidence in self._confidence_of_track.items()
                   if confidence < self.check_below and track not in self._corrected)

    @property
    def total(self) -> int:
        """Cells counted from a whole view (the four classes, other and unidentified)."""
        return len(self._label_of_track)
