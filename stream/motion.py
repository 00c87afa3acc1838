"""Stage motion: where each frame lies on the slide, from phase correlation of small grey frames.

A slide under a microscope moves rigidly, so one global shift per frame describes it. Each
frame is correlated with a *keyframe* rather than with the frame before: errors then add up
once per keyframe (every ``keyframe_shift_frac`` of the frame width travelled), not once per
frame, so a long scan at 4 px per frame drifts as little as one at 24. When the correlation
is weak (a jump, a blank or unrelated frame) the position is not guessed: a new *region*
starts, with coordinates of its own. A match with the keyframe that is merely unsure can be a
false peak (a JPEG camera's fixed 8-px blocks gave one): the last good frame is matched too, and a
sure match there that puts the view elsewhere is believed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from hv.config import StreamConfig

# Two estimates of a frame's position closer than this share of the frame width are the same answer
# (matching noise is 1-3 px); a false peak puts the view tens to hundreds of pixels off.
_AGREE_FRAC = 0.02


@dataclass(frozen=True)
class StagePosition:
    """Where a frame's top-left corner lies in its region's slide coordinates (frame pixels).

    Attributes:
        x, y: slide coordinates of the frame's pixel (0, 0); a cell at frame (u, v) is at (x + u, y + v).
        region: which region the coordinates belong to; it changes when the motion was lost.
        response: phase-correlation peak strength (0-1) of this frame's estimate; 1.0 on a region's first frame.
        new_region: True on the first frame of a region (the stream's first frame included).
    """

    x: float
    y: float
    region: int
    response: float
    new_region: bool


class StageMotion:
    """Follows the stage from frame to frame (``update``), or says it lost it.

    Example:
        motion = StageMotion(config.stream)
        position = motion.update(small_grey(frame_bgr, config.stream.motion_width_px), frame_width=640)
    """

    def __init__(self, config: StreamConfig):
        self.min_response = config.motion_min_response
        self.sure_response = max(config.motion_sure_response, config.motion_min_response)
        self.keyframe_shift_frac = config.keyframe_shift_frac
        self.region = -1
        self._key: np.ndarray | None = None  # keyframe (windowed correlation input)
        self._key_xy = np.zeros(2)  # keyframe's top-left in slide coordinates (frame pixels)
        self._last: np.ndarray | None = None  # last good frame, the fallback when the keyframe fails
        self._last_xy = np.zeros(2)
        self._hanning: np.ndarray | None = None
        self._window: np.ndarray | None = None  # the Hanning window, times a field stop's taper when there is one

    def update(self, grey_small: np.ndarray, frame_width: int, taper: np.ndarray | None = None) -> StagePosition:
        """Position of this frame, from its small grey copy (``hv.field_of_view.small_grey``) and its width in pixels.

        ``taper``: where a round field stop darkens part of the frame (``hv.field_of_view``), the weight of
        each pixel (0 on the stop and its rim): the rim, which does not move with the stage, is left out.
        """
        if self._hanning is None or self._hanning.shape != grey_small.shape:
            self._hanning = cv2.createHanningWindow(grey_small.shape[::-1], cv2.CV_32F)
            self._key = None  # a new frame size: nothing to compare with
        grey_small = self._lit(grey_small, taper)
        if self._key is None:
            return self._start_region(grey_small)
        found = self._locate(grey_small, frame_width)
        if found is None:
            return self._start_region(grey_small)
        xy, response = found
        return StagePosition(float(xy[0]), float(xy[1]), self.region, response, False)

    def follow(self, grey_small: np.ndarray, frame_width: int, taper: np.ndarray | None = None) -> None:
        """Keep up with the stage on a frame too soft to count cells in.

        During a run of such frames the stage can travel further than phase correlation
        measures between the good frames on either side (half a frame: beyond it the shift
        wraps around, and a wrong position counts cells again). So once a soft frame lies
        ``keyframe_shift_frac`` of the width from the keyframe, it becomes the keyframe: the
        next frames overlap it. Nearer, the sharp keyframe is kept (a soft reference is less
        precise), and where the correlation is unsure the frame is ignored: a new region
        starts only on a good frame (``update``). The last good frame stays the fallback a
        good frame is also tried against: a sharp frame can fail to correlate with a badly
        blurred one (phase correlation weighs every frequency alike, and such a frame's fine
        detail is sensor noise), and the motion was lost so (BENCHMARKS.md, "An eosinophil's lobes").
        """
        if self._key is None or self._hanning is None or self._hanning.shape != grey_small.shape:
            return
        grey_small = self._lit(grey_small, taper)
        shift, response = cv2.phaseCorrelate(self._key, grey_small, self._window)
        if response < self.min_response:
            return
        xy = self._key_xy - np.array(shift) * (frame_width / grey_small.shape[1])
        if np.hypot(*(xy - self._key_xy)) > self.keyframe_shift_frac * frame_width:
            self._key, self._key_xy = grey_small, xy

    def _lit(self, grey_small: np.ndarray, taper: np.ndarray | None) -> np.ndarray:
        """The frame as correlated, and the window set for it: the lit view's mean taken off, so that the
        window's weight on the stop's rim carries no static edge (a frame without a stop: as it is)."""
        if taper is None:
            self._window = self._hanning
            return grey_small
        self._window = self._hanning * taper
        weight = float(taper.sum())
        mean = float((grey_small * taper).sum()) / weight if weight else 0.0
        return grey_small - mean

    def _locate(self, grey_small: np.ndarray, frame_width: int) -> tuple[np.ndarray, float] | None:
        """This frame's slide position and the correlation's response, against the keyframe or else the
        last good frame (which then becomes the keyframe); None when neither overlaps it surely. An unsure
        match with the keyframe that a sure match with the last good frame contradicts is a false peak."""
        scale = frame_width / grey_small.shape[1]
        shift, response = cv2.phaseCorrelate(self._key, grey_small, self._window)
        # The content moved by `shift`, so the view moved by -shift (in small pixels).
        xy = self._key_xy - np.array(shift) * scale
        if response < self.min_response and self._last is not None:
            # Far from the keyframe (a fast pan), or a soft keyframe: the last good frame may still overlap enough.
            shift, response = cv2.phaseCorrelate(self._last, grey_small, self._window)
            xy = self._last_xy - np.array(shift) * scale
            self._key, self._key_xy = self._last, self._last_xy  # and becomes the keyframe
        elif response < self.sure_response and self._last is not None and self._last is not self._key:
            # An unsure match may be a false peak (a JPEG camera's fixed 8-px blocks gave one): where the last
            # good frame matches surely and puts the view elsewhere, it is believed and becomes the keyframe.
            last_shift, last_response = cv2.phaseCorrelate(self._last, grey_small, self._window)
            last_xy = self._last_xy - np.array(last_shift) * scale
            if last_response >= self.sure_response and np.hypot(*(last_xy - xy)) > _AGREE_FRAC * frame_width:
                xy, response = last_xy, last_response
                self._key, self._key_xy = self._last, self._last_xy
        if response < self.min_response:
            return None
        self._last, self._last_xy = grey_small, xy
        if np.hypot(*(xy - self._key_xy)) > self.keyframe_shift_frac * frame_width:
            self._key, self._key_xy = grey_small, xy
        return xy, float(response)

    def _start_region(self, grey_small: np.ndarray) -> StagePosition:
        self.region += 1
        self._key, self._key_xy = grey_small, np.zeros(2)
        self._last, self._last_xy = grey_small, np.zeros(2)
        return StagePosition(0.0, 0.0, self.region, 1.0, True)
