"""How hard a camera compressed its frames: the JPEG quality read back from the decoded pixels.

Many microscope cameras (USB "MJPG" modes, network cameras) send JPEG frames, and at a low quality
setting the 8 x 8 blocks wash out the granules and the chromatin that tell the classes apart: on the
counting benchmark's slide of whole fields the labels agreeing with BCCD's fell from 90-92 % to 82 %
at quality 20 and 71 % at 15, while the count held (BENCHMARKS.md, "A camera that sends JPEG").

A JPEG coder divides each block's DCT coefficients by a step from its quantisation table and rounds,
so after decoding, a low-frequency coefficient of the brightness (Y) blocks sits on a multiple of that
step, up to the pixels' rounding. The step read back gives the quality the camera was set to (for the
standard tables that libjpeg and most cameras scale; a camera with its own tables reads as the
standard quality with the same step). Frames never JPEG coded, or coded by a video codec with its
own transform and deblocking (H.264), show no such step and read as quality 100 here, as does any quality
above about 80 (its steps are too small to tell from the pixels' rounding).
"""

from __future__ import annotations

import numpy as np

BLOCK = 8
# The standard luminance table's steps for the two lowest AC coefficients, (0, 1) and (1, 0) (ITU T.81,
# Annex K): plenty of blocks carry them, and they carry most of a cell's texture.
_TABLE_STEPS = {(0, 1): 11.0, (1, 0): 12.0}
_MAX_STEP = 120  # quality 5 and below all read as 5
_MIN_COEFFICIENTS = 20  # fewer coefficients above the noise than this: no reading
# After decoding, a coefficient lies near a multiple of its step: off by the decoder's integer transform
# and the pixels' rounding, and more where decoding clipped a saturated colour (at quality 40, in one
# bright frame of the counting slide, 11.5-16.8 for a step of 14). A step fits when 70 % of the
# coefficients it would keep lie within 0.15 of a step (at least 0.75) of its multiples; uncoded
# coefficients do so for a step of s about max(1.5 / s, 0.3) of the time, so steps under 4 (quality
# 80 and up) cannot be told from none. A step a little off the true one fits too, so the largest
# fitting step is then refined to the median of each coefficient over its multiple.
_ON_MULTIPLE_ABS, _ON_MULTIPLE_REL = 0.75, 0.15
_FITTING_SHARE = 0.7
_NOISE_FLOOR = 3.0  # decoding moves a coefficient rounded to 0 by up to about 2.5 (clipped colours)
_SMALLEST_READ_STEP = 4
_SAMPLED_BLOCKS = 1024

_k = np.arange(BLOCK)
_DCT = np.sqrt(2 / BLOCK) * np.cos((2 * _k[None, :] + 1) * _k[:, None] * np.pi / (2 * BLOCK))
_DCT[0] /= np.sqrt(2)  # the orthonormal DCT-II, which is JPEG's forward transform


def grid_offset(channel: np.ndarray, lines: int = 64) -> tuple[int, int]:
    """Where the 8 x 8 grid starts (x, y): the phase whose block edges step most, on ``lines`` rows and columns.

    A camera's frames start on the grid (0, 0); a frame cropped after coding does not.
    """
    h, w = channel.shape
    rows = channel[np.linspace(0, h - 1, lines).astype(int)].astype(np.int16)
    columns = channel[:, np.linspace(0, w - 1, lines).astype(int)].astype(np.int16)
    offsets = []
    for steps in (np.abs(np.diff(rows, axis=1)).mean(axis=0), np.abs(np.diff(columns, axis=0)).mean(axis=1)):
        by_phase = steps[: len(steps) // BLOCK * BLOCK].reshape(-1, BLOCK).mean(axis=0)
        offsets.append((int(by_phase.argmax()) + 1) % BLOCK)  # the step lies between the last column and the next
    return offsets[0], offsets[1]


def quantiser_step(coefficients: np.ndarray) -> float | None:
    """The quantiser step ``coefficients`` sit on multiples of (up to ``_MAX_STEP``); None if too few to tell.

    1.0 means no step of ``_SMALLEST_READ_STEP`` or more fits: no coarse quantisation.
    """
    # Every coefficient above the decoding noise counts, also those under half a step: a coded frame has none
    # there (a step rounded them to 0), while a drawn one (flat shapes, no noise: a test card, an overlay)
    # does, and its few repeated values would otherwise fit a large step. Twice the true step fails too,
    # since the coefficients on one true step then lie half a step off.
    counted = np.abs(coefficients[np.abs(coefficients) >= _NOISE_FLOOR])
    if len(counted) < _MIN_COEFFICIENTS:
        return None  # a flat view (bare glass, a blank frame): nothing to read a step from
    steps = np.arange(_SMALLEST_READ_STEP, _MAX_STEP + 1, dtype=np.float32)[:, None]
    tolerance = np.maximum(_ON_MULTIPLE_ABS, _ON_MULTIPLE_REL * steps)
    nearest = np.maximum(np.round(counted[None, :] / steps), 1)  # a coefficient under half a step is off
    share = (np.abs(counted[None, :] - steps * nearest) < tolerance).mean(axis=1)
    fits = np.flatnonzero(share >= _FITTING_SHARE)
    if not len(fits):
        return 1.0
    coarse = float(steps[fits[-1], 0])
    used = counted[counted >= coarse / 2]
    return float(np.median(used / np.round(used / coarse)))


def quality_from_step(step: float, table_step: float) -> float:
    """The standard-table JPEG quality (1-100) whose step for this coefficient is ``step`` (libjpeg's scaling)."""
    scale = 100.0 * step / table_step  # percent of the table
    quality = 5000.0 / scale if scale > 100 else (200.0 - scale) / 2
    return float(np.clip(quality, 1.0, 100.0))


def jpeg_quality(image_bgr: np.ndarray) -> float | None:
    """The JPEG quality a frame was coded at (100: none under about 80 seen), or None for a frame too flat to tell.

    Reads ``_SAMPLED_BLOCKS`` blocks spread over the frame, on the grid ``grid_offset`` finds.
    """
    h, w = image_bgr.shape[:2]
    if h < 4 * BLOCK or w < 4 * BLOCK:
        return None
    x0, y0 = grid_offset(image_bgr[:, :, 1])
    across, down = (w - x0) // BLOCK, (h - y0) // BLOCK
    picks = np.linspace(0, across * down - 1, min(_SAMPLED_BLOCKS, across * down)).astype(int)
    top = y0 + (picks // across)[:, None] * BLOCK + _k[None, :]
    left = x0 + (picks % across)[:, None] * BLOCK + _k[None, :]
    pixels = image_bgr[top[:, :, None], left[:, None, :]].astype(np.float32)  # blocks x 8 x 8 x BGR
    luma = pixels @ np.array([0.114, 0.587, 0.299], dtype=np.float32) - 128.0  # JPEG's Y, level-shifted
    qualities = []
    for (u, v), table_step in _TABLE_STEPS.items():
        coefficients = np.einsum("i,bij,j->b", _DCT[u], luma, _DCT[v])  # coefficient (u, v) of every block
        step = quantiser_step(coefficients)
        if step is not None:
            qualities.append(100.0 if step < _SMALLEST_READ_STEP else quality_from_step(step, table_step))
    return float(np.mean(qualities)) if qualities else None
