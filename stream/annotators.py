"""Annotators draw on a BGR frame: ``annotate(scene, detections) -> scene``, chained in order."""

from __future__ import annotations

import cv2
import numpy as np

from hv.labels import CLASS_COLOURS_BGR, OUTPUT_NAMES, PARTIAL_ID, UNIDENTIFIED_ID
from stream.counter import EXTRA_NAMES, PARTIAL, UNIDENTIFIED, DifferentialCount
from stream.detections import Detections

UNIDENTIFIED_BGR = (150, 150, 150)
PARTIAL_BGR = (90, 90, 90)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_of(label_id: int) -> tuple[int, int, int]:
    return {UNIDENTIFIED_ID: UNIDENTIFIED_BGR, PARTIAL_ID: PARTIAL_BGR}.get(label_id) or CLASS_COLOURS_BGR[label_id]


def name_of(label_id: int) -> str:
    return {UNIDENTIFIED_ID: UNIDENTIFIED, PARTIAL_ID: PARTIAL}.get(label_id) or OUTPUT_NAMES[label_id]


class BoxAnnotator:
    """A rectangle per cell in its class colour."""

    def __init__(self, thickness: int = 2):
        self.thickness = thickness

    def annotate(self, scene: np.ndarray, detections: Detections) -> np.ndarray:
        for box, label in zip(detections.boxes_xyxy.astype(int), detections.label_id):
            cv2.rectangle(scene, tuple(box[:2]), tuple(box[2:]), colour_of(int(label)), self.thickness)
        return scene


class LabelAnnotator:
    """'#track label 93%' on a filled tag above each box (inside the frame at the top edge)."""

    def __init__(self, scale: float = 0.5):
        self.scale = scale

    def annotate(self, scene: np.ndarray, detections: Detections) -> np.ndarray:
        for box, label, conf, track in zip(detections.boxes_xyxy.astype(int), detections.label_id,
                                           detections.confidence, detections.track_id):
            text = f"#{track} {name_of(int(label))} {conf:.0%}"
            (width, height), _ = cv2.getTextSize(text, _FONT, self.scale, 1)
            top = max(int(box[1]), height + 6)
            left = int(np.clip(box[0], 0, max(0, scene.shape[1] - width - 6)))
            cv2.rectangle(scene, (left, top - height - 6), (left + width + 6, top), colour_of(int(label)), -1)
            cv2.putText(scene, text, (left + 3, top - 4), _FONT, self.scale, (255, 255, 255), 1, cv2.LINE_AA)
        return scene


class CountPanelAnnotator:
    """The running differential count (cells and %) and the frame rate, in a corner panel."""

    def __init__(self, counter: DifferentialCount, scale: float = 0.5):
        self.counter, self.scale = counter, scale
        self.fps: float | None = None

    def annotate(self, scene: np.ndarray, detections: Detections) -> np.ndarray:
        counts, shares = self.counter.counts(), self.counter.percentages()
        lines = [f"cells {self.counter.total}" + (f"   {self.fps:.0f} fps" if self.fps else "")]
        lines += [f"{name[:4]} {counts[name]:4d} {shares[name]:5.1f}%" for name in shares]
        lines += [f"{name[:4]} {counts[name]:4d}" for name in EXTRA_NAMES]  # not in the %
        line_height = int(22 * self.scale / 0.5)
        width = int(170 * self.scale / 0.5)
        panel = scene[4 : 8 + line_height * len(lines), 4 : 4 + width]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken, so text reads over any background
        for i, line in enumerate(lines):
            colour = (255, 255, 255) if i == 0 or i > len(shares) else CLASS_COLOURS_BGR[i - 1]
            cv2.putText(scene, line, (10, 4 + line_height * (i + 1) - 4), _FONT, self.scale, colour, 1, cv2.LINE_AA)
        return scene


class StatusAnnotator:
    """A bottom banner with the pipeline's status: why a frame was skipped, or the count against its target.

    ``source`` is anything with a ``status`` string and a ``report`` (``StreamPipeline``); a skipped
    frame's banner is red, so a technician sees at once that the view is not being counted.
    """

    def __init__(self, source, scale: float = 0.55):
        self.source, self.scale = source, scale

    def lines(self, text: str, max_width: int) -> list[str]:
        """The status split at its "; " joints into lines no wider than ``max_width`` pixels where it can be:
        with a note or two (colours adjusted, cells small) it is wider than a 640 px frame."""
        lines: list[str] = []
        for part in text.split("; "):
            joined = f"{lines[-1]}; {part}" if lines else part
            if lines and cv2.getTextSize(joined, _FONT, self.scale, 1)[0][0] <= max_width:
                lines[-1] = joined
            else:
                lines.append(part)
        return lines

    def annotate(self, scene: np.ndarray, detections: Detections) -> np.ndarray:
        skipped = self.source.report is not None and not self.source.report.ok
        background = (40, 40, 200) if skipped else (60, 60, 60)
        lines = self.lines(self.source.status, scene.shape[1] - 18)
        sizes = [cv2.getTextSize(line, _FONT, self.scale, 1)[0] for line in lines]
        step = max(height for _, height in sizes) + 8
        bottom = scene.shape[0] - 4
        top = bottom - step * len(lines) - 2
        cv2.rectangle(scene, (4, top), (14 + max(width for width, _ in sizes), bottom), background, -1)
        for row, line in enumerate(lines):  # the first line on top
            cv2.putText(scene, line, (9, top + step * (row + 1) - 3), _FONT, self.scale, (255, 255, 255), 1,
                        cv2.LINE_AA)
        return scene
