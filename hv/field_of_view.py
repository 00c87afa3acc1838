"""The part of the frame the microscope lights: an eyepiece camera or a phone adapter sees a round view.

A camera behind an eyepiece, or one whose sensor is larger than the optics' image circle, shows the
slide through a round field stop with dark corners or sides. That rim does not move with the stage,
so left as it is it pulls the stage-motion estimate towards no motion (phase correlation matches the
rim), dominates the focus measure, and lets a cell cut by the rim be classified as if whole. On the
counting benchmark's slide seen through a stop the frame's height across, 60 of 100 cells were counted,
10 of them twice, and a third of the labels agreed (BENCHMARKS.md, "A round field of view").

The stop is found on the small grey frame the motion estimate uses (``small_grey``): near-black pixels
(under ``DARK_FRAC`` of the bright background) connected to the frame's border. A frame without such
pixels is the whole frame, and nothing downstream changes. A still image (``hv classify``, the web page's
Image tab, ``hv evaluate``'s views) is looked at the same way, so "cut" means one thing everywhere.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from hv.locator import clear_of_edge

# Near black: a brightfield smear has nothing this dark (nuclei and granules stay above a third of the
# background), a field stop's shadow is.
DARK_FRAC = 0.15
MIN_STOP_SHARE = 0.01  # less of the frame than this in shadow: no stop (a dark speck at the edge)
# How far inside the rim (in small-frame pixels) the motion estimate's taper reaches zero weight.
TAPER_PX = 6


def small_grey(image: np.ndarray, width: int, to_grey: int = cv2.COLOR_BGR2GRAY) -> np.ndarray:
    """The frame in grey at ``width`` pixels wide (float32), shared by the stop's search, the motion and the quality
    checks. ``to_grey``: the OpenCV conversion (``cv2.COLOR_RGB2GRAY`` for an RGB image)."""
    height = max(8, round(image.shape[0] * width / image.shape[1]))
    grey = cv2.cvtColor(image, to_grey)
    return cv2.resize(grey, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)


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
    """The field stop's shadow in a small grey frame (``small_grey``), or None if there is none."""
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


def whole_in_view(boxes_xyxy: np.ndarray, frame_size: tuple[int, int], margin_px: float,
                  view: FieldOfView | None) -> np.ndarray:
    """(n,) bool: which boxes keep more than ``margin_px`` from the edge of a ``(width, height)`` frame
    (``hv.locator.clear_of_edge``) and from a round field stop's shadow (``view``; None: the whole frame is lit)."""
    whole = clear_of_edge(boxes_xyxy, frame_size, margin_px)
    if view is not None:
        whole &= ~view.cut_by_stop(boxes_xyxy, frame_size[0], margin_px)
    return whole

