"""Is this frame fit to classify from? Exposure, colour, JPEG compression, focus, motion blur and colour cast.

A technician would not count cells from a blurred or dark view, and a classifier should
not either: its errors there are not the ones measured on sharp fields. Each check is a
few operations on the small grey frame the motion estimate uses (plus a colour mean and a
colour spread on a sparse sample of the frame, and the camera's JPEG quality read on one
frame in ``JPEG_READ_EVERY``), and a frame that fails says why, so the overlay, the page
and summary.json can too.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import cv2
import numpy as np

from hv.config import StreamConfig
from hv.field_of_view import FieldOfView
from hv.jpeg_blocks import jpeg_quality
from hv.stain import has_no_colour, sparse_pixels

OUT_OF_FOCUS = "out of focus"
MOTION_BLUR = "motion blur"
TOO_DARK = "too dark"
OVEREXPOSED = "overexposed"
COLOUR_CAST = "colour cast"
# A monochrome camera (or a view of bare glass): the stains' colours, which tell the classes apart, are missing.
NO_COLOUR = "no colour"
# A camera that sends JPEG at a low quality: its blocks wash out the granules and chromatin.
TOO_COMPRESSED = "JPEG too compressed"
REASONS = (OUT_OF_FOCUS, MOTION_BLUR, TOO_DARK, OVEREXPOSED, COLOUR_CAST, NO_COLOUR, TOO_COMPRESSED)
# What the user can do about each, for a run whose frames mostly failed one check.
ADVICE = {
    OUT_OF_FOCUS: "focus the microscope",
    MOTION_BLUR: "move the stage more slowly, or shorten the camera's exposure",
    TOO_DARK: "more light or a longer exposure",
    OVEREXPOSED: "less light or a shorter exposure",
    COLOUR_CAST: "white-balance the camera on a bare part of the slide",
    NO_COLOUR: ("the stains' colours tell the classes apart: use a colour camera (a monochrome one shows none) "
                "on a stained part of the slide"),
    TOO_COMPRESSED: ("set the camera's JPEG (MJPG) quality to 30 or more, or choose an uncompressed format "
                     "(YUYV, raw)"),
}
# A camera's compression does not change from frame to frame: it is read on one frame in JPEG_READ_EVERY
# (about 2 ms a read) and judged by the median of the last JPEG_READS reads, so one odd read changes nothing.
JPEG_READ_EVERY = 10
JPEG_READS = 9


def mostly_skipped(frames_skipped: dict[str, int], frames: int, read_quality: float | None = None) -> str | None:
    """One line for the end of a run in which most frames failed one check: how many, why, what to do.

    ``read_quality``: the JPEG quality the camera's frames read as (summary.json's ``jpeg_quality``), said with
    "JPEG too compressed".
    """
    if not frames or not frames_skipped:
        return None
    reason, count = max(frames_skipped.items(), key=lambda item: item[1])
    if 2 * count < frames:
        return None
    read = f" (its frames read as quality {read_quality:.0f})" if reason == TOO_COMPRESSED and read_quality else ""
    return f"{count} of {frames} frames not classified: {reason}; {ADVICE[reason]}{read}"


@dataclass(frozen=True)
class QualityReport:
    """One frame's checks: ``reason`` is None when the frame may be classified from."""

    reason: str | None
    focus: float  # variance of the Laplacian of the small grey frame
    focus_reference: float | None  # the running reference it was compared with (None while warming up)
    brightness: float  # mean grey level, 0-255

    @property
    def ok(self) -> bool:
        return self.reason is None


class FrameQuality:
    """Checks frames one by one against fixed limits and a running focus reference.

    Focus has no absolute scale (it depends on the smear, the objective and the camera), so
    a frame is compared with the sharpest recent frames: the ``focus_reference_quantile`` of the
    last ``focus_window`` frames' focus values. It is out of focus below ``focus_min_ratio`` of it.
    Motion blur is blur along one direction: the gradient energy along one axis is then many
    times that along the other.
    """

    def __init__(self, config: StreamConfig):
        self.config = config
        self._focus_history: collections.deque[float] = collections.deque(maxlen=config.focus_window)
        self._frames = 0
        self._jpeg_reads: collections.deque[float] = collections.deque(maxlen=JPEG_READS)

    @property
    def jpeg_quality(self) -> float | None:
        """The camera's JPEG quality as the recent frames read (100: none under about 80 seen; None: not read)."""
        return float(np.median(self._jpeg_reads)) if self._jpeg_reads else None

    def check(self, image_bgr: np.ndarray, grey_small: np.ndarray, view: FieldOfView | None = None) -> QualityReport:
        """Checks of one frame, from the BGR frame and its small grey copy (``hv.field_of_view.small_grey``).

        ``view``: a round field stop's shadow (``hv.field_of_view``); brightness, clipping, focus and motion blur
        are then measured inside the lit view only (the rim's edge would read as sharp, its shadow as dark).
        """
        cfg = self.config
        grey_small = cv2.pyrDown(grey_small)  # half the motion width: sensor noise would swamp the Laplacian
        laplacian = cv2.Laplacian(grey_small, cv2.CV_32F)
        inside = None
        if view is not None:
            inside = cv2.resize(view.taper, grey_small.shape[::-1], interpolation=cv2.INTER_AREA) >= 1.0
            inside = inside if inside.any() else None
        lit = grey_small if inside is None else grey_small[inside]
        brightness = float(lit.mean())
        focus = float((laplacian if inside is None else laplacian[inside]).var())
        reference = (float(np.quantile(self._focus_history, cfg.focus_reference_quantile))
                     if len(self._focus_history) >= cfg.focus_warmup else None)
        self._focus_history.append(focus)
        if self.config.jpeg_quality_min and self._frames % JPEG_READ_EVERY == 0:
            read = jpeg_quality(image_bgr)
            if read is not None:  # a flat frame (bare glass, a blank view) has no blocks to read
                self._jpeg_reads.append(read)
        self._frames += 1
        reason = None
        if brightness < cfg.dark_mean:
            reason = TOO_DARK
        elif float((lit >= 250).mean()) > cfg.clipped_max_share:
            reason = OVEREXPOSED
        elif has_no_colour(image_bgr):
            reason = NO_COLOUR
        elif self._jpeg_reads and self.jpeg_quality < cfg.jpeg_quality_min:
            reason = TOO_COMPRESSED
        elif reference is not None and focus < cfg.focus_min_ratio * reference:
            streaked = _blur_anisotropy(grey_small, inside) > cfg.motion_blur_anisotropy
            reason = MOTION_BLUR if streaked else OUT_OF_FOCUS
        elif _colour_cast(image_bgr) > cfg.colour_cast_max:
            reason = COLOUR_CAST
        return QualityReport(reason, focus, reference, brightness)


def _blur_anisotropy(grey_small: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Ratio of the larger to the smaller gradient energy along x and y (1 = no preferred direction), over the
    pixels ``inside`` a field stop's lit view where there is one (its rim's arcs would give a direction)."""
    gx, gy = (np.square(cv2.Sobel(grey_small, cv2.CV_32F, *order)) for order in ((1, 0), (0, 1)))
    gx, gy = (float((g if inside is None else g[inside]).mean()) for g in (gx, gy))
    return max(gx, gy) / max(min(gx, gy), 1e-6)


def _colour_cast(image_bgr: np.ndarray) -> float:
    """How far the bright background is from neutral: largest / smallest channel mean of its pixels.

    The brightest half of a smear is plasma and glass, which a balanced camera shows near grey;
    stains tint it only a little (BCCD 1.02, PBC 1.26: ``benchmarks/frame_checks.py``).
    """
    sample = sparse_pixels(image_bgr).astype(np.float32)
    luminance = sample.sum(axis=1)
    background = sample[luminance >= np.median(luminance)]
    means = background.mean(axis=0)
    return float(means.max() / max(means.min(), 1.0))
