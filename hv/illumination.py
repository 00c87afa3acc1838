"""Uneven light: a vignette, or a lamp off the optical axis, divided out before cells are looked for.

A phone adapter, a camera adapter of the wrong size or a condenser out of alignment lights the field
unevenly: the plasma is bright in the middle and darker towards the corners. Dark enough, a corner's plasma
looks as dense as a nucleus to the locator: the counting benchmark's slide with 40 % of the light left at the
corners counted 178 cells for 100, 79 of them no cell (BENCHMARKS.md, "Uneven light").

The light is read from the plasma, the brightest thing on a smear: the small grey frame
(``hv.field_of_view.small_grey``) is cut into ``GRID`` blocks, each block's ``LIGHT_PERCENTILE``-th percentile
is its plasma level where plasma shows, and a smooth surface (quadratic in x and y) is fitted to them, blocks
that cells cover (well under the fit) left out round by round. Where the surface's darkest point in the lit
view is under ``uneven_below`` of its brightest, the frame is divided by the light read the same way from each
colour channel (a phone camera's lens shading tints the corners as it darkens them; evened in grey alone, warm
corners left 8-13 false cells on the counting slide: BENCHMARKS.md, "A phone camera's lens shading"); a frame
lit evenly enough is left exactly as it is, so the labs the model learnt from (which ``uneven_below`` is chosen
never to touch) see no change. A round field stop's shadow (``hv.field_of_view``) takes no part in the fit and
stays dark.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import cv2
import numpy as np

from hv.field_of_view import FieldOfView, field_of_view, small_grey

GRID = (8, 6)  # blocks across and down: each about half a white cell wide at the training labs' scale
LIGHT_PERCENTILE = 95
_FIT_ROUNDS = 3
# A block whose level is under this share of the fit holds no plasma (a white cell, a clump of red cells
# covers it): left out of the next round's fit.
_COVERED_BELOW = 0.9
_MIN_BLOCKS = 12  # fewer blocks of plasma than this: no fit, the frame is left as it is
_MAX_STOP_SHARE = 0.05  # a block more shadowed than this by a field stop takes no part
# Where the view is lit under this share of its brightest, evening raises it (and its noise) over 2.5 times: a cell
# there is treated as at the view's edge, tracked but classified only once seen in better light (the counting
# slide lit from one side counted 22 dark red cells there as white cells: BENCHMARKS.md, "Uneven light").
DIM_BELOW = 0.4
SURFACE_GRID = (32, 24)  # cells across and down the surface is given on


def _terms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The quadratic surface's terms at (x, y), both in -1..1 across the frame."""
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1)


def light_surface(grey_small: np.ndarray, view: FieldOfView | None = None) -> np.ndarray | None:
    """The light reaching the frame, 1 at its brightest lit point, on a ``SURFACE_GRID`` grid spanning the frame
    (resize it to any size: the surface is smooth); None if it cannot be read.

    ``grey_small``: the small grey frame (``hv.field_of_view.small_grey``), or a small colour frame of the same
    size (``small_colour``): then each channel's light, (rows, columns, channels), each 1 at its own brightest.
    ``view``: a round field stop's shadow on the same grid (blocks it shades are left out; the surface is scaled
    to its brightest point in the lit view).
    """
    if grey_small.ndim == 3:
        channels = [light_surface(grey_small[..., c], view) for c in range(grey_small.shape[2])]
        return None if any(c is None for c in channels) else np.stack(channels, axis=-1)
    height, width = grey_small.shape
    columns, rows = GRID
    block_w, block_h = width // columns, height // rows
    if block_w < 2 or block_h < 2:
        return None
    blocks = grey_small[: rows * block_h, : columns * block_w].reshape(rows, block_h, columns, block_w)
    levels = np.percentile(blocks.transpose(0, 2, 1, 3).reshape(rows, columns, -1), LIGHT_PERCENTILE, axis=-1)
    y, x = np.mgrid[:rows, :columns].astype(np.float32)
    terms = _terms(2 * (x + 0.5) / columns - 1, 2 * (y + 0.5) / rows - 1).reshape(-1, 6)
    levels = levels.reshape(-1)
    lit = np.ones(rows * columns, bool)
    if view is not None:
        shadow = view.stop[: rows * block_h, : columns * block_w].reshape(rows, block_h, columns, block_w)
        lit = shadow.mean(axis=(1, 3)).reshape(-1) <= _MAX_STOP_SHARE
    keep = lit & (levels > 0)
    for _ in range(_FIT_ROUNDS):
        if keep.sum() < _MIN_BLOCKS:
            return None
        coefficients = np.linalg.lstsq(terms[keep], levels[keep], rcond=None)[0]
        keep = lit & (levels >= _COVERED_BELOW * (terms @ coefficients))
    y, x = np.mgrid[: SURFACE_GRID[1], : SURFACE_GRID[0]].astype(np.float32)
    # At the centres of the grid's cells, as cv2.resize takes them, so that a resized surface lies where it was fitted.
    surface = _terms(2 * (x + 0.5) / SURFACE_GRID[0] - 1, 2 * (y + 0.5) / SURFACE_GRID[1] - 1) @ coefficients.astype(
        np.float32)
    inside = surface if view is None else surface[~_on_grid(view.stop)]
    brightest = float(inside.max()) if inside.size else 0.0
    if brightest <= 0:
        return None
    return np.clip(surface / brightest, 0, 1).astype(np.float32)


def _on_grid(stop: np.ndarray) -> np.ndarray:
    """A field stop's shadow on the ``SURFACE_GRID`` grid (a point is shadow if any shadow lies about it)."""
    small = cv2.resize(stop.astype(np.float32), SURFACE_GRID, interpolation=cv2.INTER_AREA)
    return small > 0


def darkest_lit(surface: np.ndarray, view: FieldOfView | None = None) -> float:
    """The light surface's darkest point in the lit view (its brightest is 1); 1 where no point of the surface's
    grid is wholly lit (a view smaller than a grid cell: nothing to even)."""
    lit = surface if view is None else surface[~_on_grid(view.stop)]
    return float(lit.min()) if lit.size else 1.0


def uneven_light(grey_small: np.ndarray, uneven_below: float, view: FieldOfView | None = None) -> np.ndarray | None:
    """``light_surface`` where its darkest lit point is under ``uneven_below`` of its brightest; else None (0: off)."""
    if not uneven_below:
        return None
    surface = light_surface(grey_small, view)
    if surface is None:
        return None
    return surface if darkest_lit(surface, view) < uneven_below else None


class Evening(NamedTuple):
    """What evening a light surface takes at one frame size (``evening``): kept while the light read stands."""

    gain: np.ndarray  # (height, width, channels) float32: the frame is multiplied by it
    dim: np.ndarray  # (small grey height, width) bool: lit under DIM_BELOW, outside the view for the cut test


def light_gain(surface: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The gain (``frame_shape``: height, width, channels; float32) that divides a frame by the light ``surface``
    (``light_surface``: grey, or one per channel in the frame's order), so that its plasma is as bright, and as
    coloured, everywhere as at its brightest point. Light under 5 % (a stop's shadow) is not raised."""
    height, width, channels = frame_shape
    light = cv2.resize(surface, (width, height), interpolation=cv2.INTER_LINEAR)
    gain = np.where(light > 0.05, 1.0 / np.maximum(light, 0.05), 1.0).astype(np.float32)
    return gain if gain.ndim == 3 else cv2.merge([gain] * channels)


def small_colour(image: np.ndarray, grey_shape: tuple[int, int]) -> np.ndarray:
    """``image`` at the small grey frame's size (``grey_shape``: height, width), in colour (float32)."""
    return cv2.resize(image, grey_shape[::-1], interpolation=cv2.INTER_AREA).astype(np.float32)


def evening(surface: np.ndarray, frame_shape: tuple[int, ...], grey_shape: tuple[int, int],
            colour: np.ndarray | None = None) -> Evening:
    """The gain of the light ``surface`` at ``frame_shape`` (of its ``colour``, each channel's light, where read:
    a phone camera's lens shading tints the corners as it darkens them) and the parts of the small grey frame
    (``grey_shape``) lit under ``DIM_BELOW``."""
    dim = cv2.resize(surface, grey_shape[::-1], interpolation=cv2.INTER_LINEAR) < DIM_BELOW
    return Evening(light_gain(surface if colour is None else colour, frame_shape), dim)


def evened(image: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``image`` (uint8, any channel order) multiplied by a ``light_gain``."""
    return cv2.multiply(image, gain, dtype=cv2.CV_8U)


def flatten(image: np.ndarray, surface: np.ndarray) -> np.ndarray:
    """``image`` (uint8, any channel order) divided by the light ``surface`` (``light_surface``)."""
    return evened(image, light_gain(surface, image.shape))


class RunningLight:
    """A stream's light surface: read on one frame in ``every``, the pointwise median of the last ``window`` reads.

    The light comes from the optics and does not move with the slide, while one frame's read follows where its
    cells lie (a frame's read spreads 0.55-0.71 around a vignette's true 0.60: BENCHMARKS.md, "Uneven light"),
    so the stream judges the median and flattens every frame alike, or none. ``restart`` forgets the reads (the
    stream calls it when the stage motion is lost: another objective brings other light).
    """

    def __init__(self, uneven_below: float, every: int = 5, window: int = 9):
        self._below, self._every = uneven_below, every
        self._recent: collections.deque[np.ndarray] = collections.deque(maxlen=window)
        self._median: np.ndarray | None = None  # of the recent reads: changes only when a read is added
        # Each channel's light, read on the frames whose own grey read is uneven (light evened is light so read).
        self._recent_colour: collections.deque[np.ndarray] = collections.deque(maxlen=window)
        self.colour: np.ndarray | None = None  # their median, to even by (``evening``); None before one is read
        self._frames = 0
        self.darkest: float | None = None  # the median surface's darkest lit point, once read

    def restart(self) -> None:
        self._recent.clear()
        self._recent_colour.clear()
        self._median = self.colour = None
        self._frames = 0

    def update(self, grey_small: np.ndarray, view: FieldOfView | None = None,
               image: np.ndarray | None = None) -> np.ndarray | None:
        """The light surface to even this frame by (``evening``), or None: its light is even enough (or off).
        ``image``: the frame itself, whose channels are read where the light is uneven (``colour``)."""
        if not self._below:
            return None
        if self._frames % self._every == 0 or not self._recent:
            surface = light_surface(grey_small, view)
            if surface is not None:
                self._recent.append(surface)
                self._median = np.median(np.stack(self._recent), axis=0)
                if image is not None and darkest_lit(surface, view) < self._below:
                    self._read_colour(small_colour(image, grey_small.shape), view)
        self._frames += 1
        if self._median is None:
            return None
        self.darkest = darkest_lit(self._median, view)  # this frame's view: a stop's shadow may move
        return self._median if self.darkest < self._below else None

    def _read_colour(self, colour_small: np.ndarray, view: FieldOfView | None) -> None:
        surface = light_surface(colour_small, view)
        if surface is not None:
            self._recent_colour.append(surface)
            self.colour = np.median(np.stack(self._recent_colour), axis=0)


def usable_view(dim: np.ndarray, view: FieldOfView | None) -> FieldOfView | None:
    """``view`` (a round stop's shadow, or None) with the parts lit under ``DIM_BELOW`` (an ``Evening``'s
    ``dim``) added to its shadow, for the cut test (``hv.field_of_view.whole_in_view``)."""
    if not dim.any():
        return view
    if view is None:
        return FieldOfView(dim, np.ones(dim.shape, np.float32))
    return FieldOfView(dim | view.stop, view.taper)


class StillImage(NamedTuple):
    """A still image as the locator and the crop should see it (``evened_still``)."""

    image: np.ndarray  # RGB: the image itself, or divided by its light where that was uneven
    view: FieldOfView | None  # what a whole cell keeps clear of: a round stop's shadow, parts too dim to even
    evened_darkest: float | None  # the light's darkest point in the view over its brightest, if evened; else None


def evened_still(image_rgb: np.ndarray, uneven_below: float, grey_width: int) -> StillImage:
    """A still image's light divided out where uneven (``uneven_light``), parts lit too dimly for that left out of
    the view (``usable_view``); else the image itself and its round view, if any. ``grey_width``: the small grey
    frame's width (``stream.motion_width_px``), as the stream reads a frame."""
    grey = small_grey(image_rgb, grey_width, cv2.COLOR_RGB2GRAY)
    view = field_of_view(grey)
    surface = uneven_light(grey, uneven_below, view)
    if surface is None:
        return StillImage(image_rgb, view, None)
    gain, dim = evening(surface, image_rgb.shape, grey.shape, light_surface(small_colour(image_rgb, grey.shape), view))
    return StillImage(evened(image_rgb, gain), usable_view(dim, view), darkest_lit(surface, view))
