"""Annotators draw on a BGR frame: ``annotate(scene, detections) -> scene``, chained in order."""

from __future__ import annotations

import cv2
import numpy as np

from hv.labels import CLASS_COLOURS_BGR, OUTPUT_NAMES, UNIDENTIFIED_ID
from stream.counter import UNIDENTIFIED, DifferentialCount
from stream.detections import Detections

UNIDENTIFIED_BGR = (150, 150, 150)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def colour_of(label_id: int) -> tuple[int, int, int]:
    return UNIDENTIFIED_BGR if label_id == UNIDENTIFIED_ID else CLASS_COLOURS_BGR[label_id]


def name_of(label_id: int) -> str:
    return UNIDENTIFIED if label_id == UNIDENTIFIED_ID else OUTPUT_NAMES[label_id]


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
        lines += [f"{name[:4]} {counts[name]:4d}" for name in (OUTPUT_NAMES[-1], UNIDENTIFIED)]  # not in the %
        line_height = int(22 * self.scale / 0.5)
        width = int(170 * self.scale / 0.5)
        panel = scene[4 : 8 + line_height * len(lines), 4 : 4 + width]
        panel[:] = (panel * 0.35).astype(np.uint8)  # darken, so text reads over any background
        for i, line in enumerate(lines):
            colour = (255, 255, 255) if i == 0 or i > len(shares) else CLASS_COLOURS_BGR[i - 1]
            cv2.putText(scene, line, (10, 4 + line_height * (i + 1) - 4), _FONT, self.scale, colour, 1, cv2.LINE_AA)
        return scene
