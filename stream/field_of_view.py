"""The part of the frame the microscope lights: an eyepiece camera or a phone adapter sees a round view.

A camera behind an eyepiece, or one whose sensor is larger than the optics' image circle, shows the
slide through a round field stop with dark corners or sides. That rim does not move with the stage,
so left as it is it pulls the stage-motion estimate towards no motion (phase correlation matches the
rim), dominates the focus measure, and lets a cell cut by the rim be classified as if whole. On the
counting benchmark's slide seen through a stop the frame's height across, 60 of 100 cells were counted,
10 of them twice, and a third of the labels agreed (BENCHMARKS.md, "A round field of view").

The stop is found on the small grey frame the motion estimate uses: near-black pixels (under
``DARK_FRAC`` of the bright background) connected to the frame's border. A frame without such pixels
is the whole frame, and nothing downstream changes.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

# Near black: a brightfield smear has nothing this dark (nuclei and granules stay above a third of the
# background), a field stop's shadow is.
DARK_FRAC = 0.15
MIN_STOP_SHARE = 0.01  # less of the frame than this in shadow: no stop (a dark speck at the edge)
# How far inside the rim (in small-frame pixels) the motion estimate's taper reaches zero weight.
TAPER_PX = 6


class FieldOfView(NamedTuple):
    """The lit part of one frame, on the small grey frame's grid (``None`` where the whole frame is lit)."""

    stop: np.ndarray  # bool, True in the field stop's shadow
    taper: np.ndarray  # float32 0-1: zero on the shadow and its rim, one well inside the lit view

    def cut_by_stop(self, boxes_xyxy: np.ndarray, frame_width: int, margin_px: float) -> np.ndarray:
        """True for boxes (frame pixels) that come within ``margin_px`` of the shadow: the stop may cut them."""
        scale = self.stop.shape[1] / frame_width
        height, width = self.stop.shape
        cut = np.zeros(len(boxes_xyxy), bool)
        for i, (x1, y1, x2, y2) in enumerate(np.asarray(boxes_xyxy, np.float32)):
            left, top = max(0, int((x1 - margin_px) * scale)), max(0, int((y1 - margin_px) * scale))
            right = min(width, int(np.ceil((x2 + margin_px) * scale)) + 1)
            bottom = min(height, int(np.ceil((y2 + margin_px) * scale)) + 1)
            cut[i] = bool(self.stop[top:bottom, left:right].any())
        return cut


def field_of_view(grey_small: np.ndarray) -> FieldOfView | None:
    """The field stop's shadow in a small grey frame (``stream.motion.small_grey``), or None if there is none."""
    sample = grey_small[::4, ::4]  # every frame passes here: a sparse look first
    threshold = DARK_FRAC * float(np.percentile(sample, 90))
    if float((sample < threshold).mean()) < MIN_STOP_SHARE:
        return None
    dark = (grey_small < threshold).astype(np.uint8)
    # Only shadow that reaches the frame's border is the stop's (a dark object inside the view is not).
    count, labels = cv2.connectedComponents(dark, connectivity=8)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border > 0]
    stop = np.isin(labels, border)
    if stop.mean() < MIN_STOP_SHARE:
        return None
    inside = cv2.distanceTransform((~stop).astype(np.uint8), cv2.DIST_L2, 3)
    taper = np.clip((inside - 1) / TAPER_PX, 0, 1).astype(np.float32)
    return FieldOfView(stop, taper * taper * (3 - 2 * taper))  # smoothstep: no step at the rim
