"""White-cell locator and crop: shared by training and the stream so both see the same crops.

A white cell is found by its nucleus: in Romanowsky-type stains (Giemsa, Wright) the
nucleus is the only large blue-purple object in the field. Red cells are pink-red and the
background is pale, so "how much bluer than red or green" separates them. Platelets are
purple too but small, so blobs are filtered by area relative to the expected cell size;
a second blob comparable to the field's largest whole one is a cell whatever that size says.
A neutrophil's lobes are separate blobs; a closing with a kernel a fraction of a cell wide
joins them into one cell. The cell's extent comes from two estimates averaged: a box
grown from the nucleus by a fitted rule, and the outline of the faintly blue region around
the nucleus (cytoplasm is bluer than red cells and plasma, but too faint at its rim to trust
alone, and it touches neighbouring red cells).

A field with no blue-purple nucleus (a stain that draws nuclei brown-red, say, or a view
with no white cell) is searched again for nuclei as its densest objects, denser than red
cells whatever their colour (``dense_score``); the same blobs-to-boxes steps follow. How much
denser depends on the red cells' colour (``red_cells_pink``): where they are pink, the stain is
Romanowsky-type and a view without a blue-purple nucleus most likely holds no white cell, so
only far denser objects count (``dense_nucleus_od``); where they are not, the stain is another
and its nuclei need only stand above the red cells (``other_stain_nucleus_od``).
"""

from __future__ import annotations

import collections
import math

import cv2
import numpy as np

from hv.annotations import inside_share
from hv.config import LocatorConfig
from hv.scale import CELL_OVER_NUCLEUS, nucleus_diameter_px, red_cell_diameter_px
from hv.stain import AS_IS, optical_density, recoloured, red_cells_pink

# Blueness is measured against a per-frame background estimate, so a warmer or cooler
# white balance shifts both alike; this floor keeps a field with no nucleus from having
# its faint blue noise thresholded into blobs.
_MIN_CONTRAST = 28
# Half a cell box's side = a * expected diameter + b * nucleus side + c * sqrt(nucleus area).
_BOX_FIT = (0.12, 0.26, 0.27)
# Cytoplasm is at least this much bluer than the field's median (CIELAB b*, 8-bit units: the
# blue-yellow axis separates it from red cells and plasma better than purple_score does);
# the outline is looked for within this many expected diameters of the nucleus centre.
_CYTOPLASM_CONTRAST = 12
_OUTLINE_RADIUS = 0.75
# Cell box = _BOX_GROW * (_OUTLINE_WEIGHT * outline box + (1 - _OUTLINE_WEIGHT) * fitted box).
# These three and the two above were chosen on the even-positioned half of the BCCD fields
# (benchmarks/locator_accuracy.py reports the held-out half).
_OUTLINE_WEIGHT = 0.7
_BOX_GROW = 1.1
# A second nucleus blob at least this share of the field's largest whole one (which passed the
# area filter) is a cell even when it falls under the area filter: that filter rests on the frame's
# scale estimate, which fields of clumped red cells can put 1.5x too high, dropping a small
# lymphocyte beside a larger cell. On the even-positioned half of the BCCD fields, annotated second
# cells are 0.41-0.96 of the largest blob and the other blobs under the filter at most 0.17.
_SECOND_NUCLEUS_SHARE = 0.3
# A further cell box that overlaps an earlier box of the frame by at least this share of the smaller of
# the two is another part of that cell: in a pale stain the closing may not join a nucleus's lobes,
# and the stream then counted one cell twice (BENCHMARKS.md, "A pale stain's lobes").
_SAME_CELL_OVERLAP = 0.5


def purple_score(image_rgb: np.ndarray) -> np.ndarray:
    """How much bluer than red/green each pixel is, relative to the field's background.

    Args:
        image_rgb: (H, W, 3) uint8 RGB.

    Returns:
        (H, W) int16 score: ~0 background, negative red cells, large positive nuclei.
    """
    red, green, blue = cv2.split(image_rgb)
    red_or_green = cv2.max(red, green)
    score = blue.astype(np.int16) - red_or_green
    # Rotated training images have black corners; they carry no stain information.
    valid = cv2.max(red_or_green, blue) > 25
    # The median of every 4th pixel in each direction is a stable background estimate at 1/16 of the cost.
    sample = score[::4, ::4][valid[::4, ::4]]
    background = int(np.median(sample)) if sample.size else 0
    score -= background
    score[~valid] = 0
    return score


def dense_score(image_rgb: np.ndarray) -> np.ndarray:
    """Optical density summed over the three channels, above the plasma's.

    A stain-agnostic view of the field: nuclei absorb the most light whatever colour their
    stain gives them. Measured from the plasma (the field's brightest 5 %), it does not change
    with the lamp's brightness or the exposure, which add the same density everywhere. Red
    cells, even overlapping, reach about 1.3 above the plasma in BCCD views; nuclei of
    CellaVision (PBC) images 2.5-3.5, whatever their colour (benchmarks/locator_other_stains.py).

    Args:
        image_rgb: (H, W, 3) uint8 RGB.

    Returns:
        (H, W) float32 density above the plasma's; near-black pixels (rotated corners) are 0.
    """
    density = optical_density(image_rgb).sum(axis=2)
    valid = image_rgb.max(axis=2) > 25
    sample = density[::4, ::4][valid[::4, ::4]]
    if not sample.size:
        return np.zeros(density.shape, np.float32)
    density -= float(np.percentile(sample, 5))
    density[~valid] = 0
    return density


def cell_diameter_px(image_rgb: np.ndarray, config: LocatorConfig) -> float:
    """The expected white-cell diameter in this frame, in its pixels: the scale of locating and cropping.

    With ``cell_diameter_frac = "auto"`` it is measured from the frame's red cells
    (``hv.scale``) times ``red_cell_ratio``; a frame without measurable red cells gets
    ``fallback_diameter_frac`` of its width. With a white cell in view, the result is kept
    within ``hv.scale.CELL_OVER_NUCLEUS`` of its nucleus's size, which catches the frames
    whose red cells mislead (one large clump). A number is a fixed share of the frame width.
    """
    width = image_rgb.shape[1]
    if config.cell_diameter_frac != "auto":
        return float(config.cell_diameter_frac) * width
    red_cell = red_cell_diameter_px(image_rgb, config.work_width_px)
    diameter = config.fallback_diameter_frac * width if red_cell is None else red_cell * config.red_cell_ratio
    nucleus = nucleus_diameter_px(image_rgb, config.work_width_px)
    if nucleus is not None:  # a white cell in view bounds what its diameter can be
        diameter = float(np.clip(diameter, CELL_OVER_NUCLEUS[0] * nucleus, CELL_OVER_NUCLEUS[1] * nucleus))
    return diameter


# One field's own scale estimate spreads more than a stream's running median of many: on blood-cells/TRAIN
# (one microscope, one magnification) 5 % of images read under 75.8 px and 1 % under 61.4, 0.81 of it
# (benchmarks/training_cell_sizes.py). A still image is said to show small cells only under this share of
# locator.min_cell_diameter_px: held-out blood-cells originals read under 75 px were labelled no worse.
ONE_FIELD_SPREAD = 0.8


def small_cells_note(diameter_px: float, min_diameter_px: float, brief: bool = False,
                     setting: str = "locator.min_cell_diameter_px") -> str | None:
    """What to tell the user when a frame's cells are fewer pixels across than the model learnt from; else None.

    Every crop is resized to the model's input, so a cell seen at a lower magnification reaches
    it enlarged and with less detail: it is still located and counted, but its label is less sure.
    ``min_diameter_px`` comes from ``setting`` (BENCHMARKS.md, "A lower magnification");
    ``brief``: the few words that fit the stream's status line.
    """
    if diameter_px >= min_diameter_px:
        return None
    if brief:
        return f"cells small ({diameter_px:.0f} px < {min_diameter_px:.0f}): labels less sure"
    return (f"cells about {diameter_px:.0f} px across, fewer than the {min_diameter_px:.0f} px the model "
            f"learnt from ({setting}): labels less sure; use a higher magnification")


class RunningCellScale:
    """A stream's cell diameter: measured every ``every`` frames, the median of the last ``window``.

    The optics of a live microscope change only when the user changes the objective, while
    one frame's measurement can be off (few red cells in view, a blurred frame), so the
    stream uses a running median and pays the ~10 ms measurement on one frame in ``every``.
    ``restart`` forgets the measurements: the stream calls it when the stage motion is lost
    (``stream.motion``), which an objective change causes (the view zooms, and no shift
    explains it), so the new objective's scale holds from its first frame instead of after
    half a window. A steadier scale (a longer window, frames without red cells not voting)
    was tried and not adopted (BENCHMARKS.md, "A steadier cell scale in the stream").
    A fixed ``cell_diameter_frac`` is passed through on every frame.
    """

    def __init__(self, config: LocatorConfig, every: int = 10, window: int = 9):
        self._config, self._every = config, every
        self._recent: collections.deque[float] = collections.deque(maxlen=window)
        self._frames = 0

    def restart(self) -> None:
        """Forget every measurement: the next frame is measured, as the stream's first."""
        self._recent.clear()
        self._frames = 0

    def update(self, image_rgb: np.ndarray) -> float:
        """The diameter in pixels to locate and crop this frame with."""
        if self._config.cell_diameter_frac != "auto":
            return float(self._config.cell_diameter_frac) * image_rgb.shape[1]
        if self._frames % self._every == 0 or not self._recent:
            self._recent.append(cell_diameter_px(image_rgb, self._config))
        self._frames += 1
        return float(np.median(self._recent))


def locate_cells(image_rgb: np.ndarray, config: LocatorConfig, diameter_px: float | None = None) -> np.ndarray:
    """Find every white cell in a field.

    Args:
        image_rgb: (H, W, 3) uint8 RGB frame, any size.
        config: locator settings (expected cell size, working width, area filter).
        diameter_px: the frame's expected cell diameter from ``cell_diameter_px`` (measured
            here if None); pass it when the crop will use it too, to measure once.

    Returns:
        (n, 4) float32 boxes ``[x1, y1, x2, y2]`` in the frame's pixels, largest nucleus first,
        clipped to the frame.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image_rgb.shape}")
    height, width = image_rgb.shape[:2]
    if min(height, width) < 2:
        return np.zeros((0, 4), np.float32)
    if diameter_px is None:
        diameter_px = cell_diameter_px(image_rgb, config)
    scale = min(1.0, config.work_width_px / width)
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    diameter = diameter_px * scale

    boxes = _cell_boxes(_purple_nuclei(small, diameter), small, diameter, config)
    if not boxes and config.dense_nucleus_od > 0:  # no blue-purple nucleus: another stain, or no white cell
        threshold = config.dense_nucleus_od if red_cells_pink(small) else config.other_stain_nucleus_od
        dense = cv2.GaussianBlur(dense_score(small), (0, 0), sigmaX=max(1.0, diameter / 60))
        boxes = _cell_boxes((dense > threshold).astype(np.uint8), small, diameter, config)
    if not boxes:
        return np.zeros((0, 4), np.float32)
    out = np.array(boxes, np.float32) / scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def _purple_nuclei(small_rgb: np.ndarray, diameter: float) -> np.ndarray:
    """(H, W) uint8 mask of the pixels markedly bluer than red or green: Romanowsky nuclei."""
    score = purple_score(small_rgb)
    score = cv2.GaussianBlur(score.astype(np.float32), (0, 0), sigmaX=max(1.0, diameter / 60))
    positive = np.clip(score, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(positive, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (positive > max(otsu, _MIN_CONTRAST)).astype(np.uint8)


def _cell_boxes(mask: np.ndarray, small: np.ndarray, diameter: float, config: LocatorConfig) -> list[list[float]]:
    """Cell boxes (work-width pixels, largest nucleus first) grown from a nucleus mask's cell-sized blobs."""
    # Join a neutrophil's lobes (gaps up to ~1/5 of a cell) into one blob.
    k = max(3, int(round(diameter * 0.2)) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))

    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    min_area = config.min_area_frac * math.pi * (diameter / 2) ** 2
    field_yellowness = None  # measured once, for the first cell-sized blob
    boxes: list[list[float]] = []
    order = np.argsort(-stats[1:, cv2.CC_STAT_AREA]) + 1
    if not len(order) or stats[order[0], cv2.CC_STAT_AREA] < min_area:
        return boxes
    # The largest blob passed the filter; the others pass it or a share of the largest whole one that
    # passed it. A blob the frame edge cuts shows only part of its nucleus: taken as the reference, a sliver
    # of a cell leaving the view made a platelet its "second cell" on a moving slide (BENCHMARKS.md, "A cut
    # cell's sliver").
    floor = min_area
    for i in order:
        x, y, w, h, area = stats[i]
        if area < min_area:
            break
        if x > 0 and y > 0 and x + w < mask.shape[1] and y + h < mask.shape[0]:
            floor = min(min_area, _SECOND_NUCLEUS_SHARE * area)
            break
    for i in order:
        area = stats[i, cv2.CC_STAT_AREA]
        if area < floor:
            break
        x, y, w, h = stats[i, :4]
        cx, cy = x + w / 2, y + h / 2
        if any(b[0] < cx < b[2] and b[1] < cy < b[3] for b in boxes):
            continue  # a lobe the closing did not join, inside a larger nucleus's cell: not a second cell
        # Cell extent from nucleus extent: a linear fit on every other annotated BCCD field.
        root_area = math.sqrt(area)
        half_w = _BOX_FIT[0] * diameter + _BOX_FIT[1] * w + _BOX_FIT[2] * root_area
        half_h = _BOX_FIT[0] * diameter + _BOX_FIT[1] * h + _BOX_FIT[2] * root_area
        fitted = np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
        if field_yellowness is None:
            field_yellowness = _median_yellowness(small)
        outline = _outline_box(small, cx, cy, diameter, field_yellowness)
        blended = fitted if outline is None else _OUTLINE_WEIGHT * outline + (1 - _OUTLINE_WEIGHT) * fitted
        centre, half = (blended[:2] + blended[2:]) / 2, (blended[2:] - blended[:2]) / 2 * _BOX_GROW
        box = [*(centre - half), *(centre + half)]
        # The share of the smaller box inside the other: the larger of the two ways round.
        if not boxes or max(inside_share([box], boxes).max(), inside_share(boxes, [box]).max()) < _SAME_CELL_OVERLAP:
            boxes.append(box)
    return boxes


def _yellowness(image_rgb: np.ndarray) -> np.ndarray:
    """CIELAB b*: blue-purple cells low, red cells high, plasma between."""
    return cv2.cvtColor(np.ascontiguousarray(image_rgb), cv2.COLOR_RGB2LAB)[..., 2]


def _median_yellowness(image_rgb: np.ndarray) -> int:
    """The field's typical b*, from every 4th pixel each way (red cells and plasma dominate)."""
    return int(np.median(_yellowness(image_rgb[::4, ::4])))


def _outline_box(
    image_rgb: np.ndarray, cx: float, cy: float, diameter: float, field_yellowness: int
) -> np.ndarray | None:
    """Bounding box of the region bluer than the field around a nucleus, within a cell-sized disk.

    Only the disk's square is converted and cleaned, which keeps this cheap per cell.
    Returns None when the disk holds no blue region (then the fitted box stands alone).
    """
    height, width = image_rgb.shape[:2]
    radius = int(round(_OUTLINE_RADIUS * diameter))
    x0, y0 = max(0, int(cx) - radius), max(0, int(cy) - radius)
    x1, y1 = min(width, int(cx) + radius + 1), min(height, int(cy) + radius + 1)
    mask = (_yellowness(image_rgb[y0:y1, x0:x1]) < field_yellowness - _CYTOPLASM_CONTRAST).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    k = max(3, int(diameter * 0.08) | 1)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    disk = np.zeros_like(mask)
    cv2.circle(disk, (int(cx) - x0, int(cy) - y0), radius, 1, -1)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask & disk, connectivity=8)
    if count < 2:
        return None
    # The region under the nucleus centre; a ring-shaped nucleus can leave the centre
    # outside, and then the largest region stands in.
    label = labels[min(int(cy) - y0, y1 - y0 - 1), min(int(cx) - x0, x1 - x0 - 1)]
    if label == 0:
        label = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[label, :4]
    return np.array([x0 + x, y0 + y, x0 + x + w, y0 + y + h], np.float64)


def clear_of_edge(boxes_xyxy: np.ndarray, frame_size: tuple[int, int], margin_px: float) -> np.ndarray:
    """(n,) bool: which boxes keep more than ``margin_px`` from every edge of a ``(width, height)`` frame.

    A cell the edge cuts has a box that touches it, or nearly: the locator's box can stop
    short of the cell's true outline. Its crop may show part of a cell padded by the fill, and
    a moving slide will show it whole soon: the stream classifies only cells clear of the
    edge. Still images classify the others too and mark them cut. The margin is
    ``stream.edge_margin_frac`` times the expected diameter.
    """
    width, height = frame_size
    boxes = np.asarray(boxes_xyxy, np.float32).reshape(-1, 4)
    return ((boxes[:, 0] > margin_px) & (boxes[:, 1] > margin_px)
            & (boxes[:, 2] < width - margin_px) & (boxes[:, 3] < height - margin_px))


def crop_cell(image_rgb: np.ndarray, box_xyxy: np.ndarray, config: LocatorConfig, size: int,
              diameter_px: float | None = None) -> np.ndarray:
    """Cut the classifier's input around one cell (``crop_cell_recoloured`` without saying how it was recoloured)."""
    return crop_cell_recoloured(image_rgb, box_xyxy, config, size, diameter_px)[0]


def crop_cell_recoloured(image_rgb: np.ndarray, box_xyxy: np.ndarray, config: LocatorConfig, size: int,
                         diameter_px: float | None = None) -> tuple[np.ndarray, str]:
    """Cut the classifier's input around one cell, and say which colour correction it got.

    The window is a square of ``crop_context`` expected cell diameters (larger if the box
    is), centred on the box, so every crop shows cells at the same scale: size is one of
    the cues that tell a lymphocyte from a monocyte. Parts outside the frame are reflected
    or black (``config.edge_fill``). A crop whose red cells are not eosin-pink (another stain)
    has its colours turned to the training labs', one lit by a lamp of another colour gets their
    plasma (``hv.stain``, ``config.stain_correction``).

    Args:
        image_rgb: (H, W, 3) uint8 RGB frame.
        box_xyxy: (4,) box in frame pixels.
        config: locator settings.
        size: output side in pixels (the model's input size).
        diameter_px: the frame's expected cell diameter (``cell_diameter_px``; measured here if None).

    Returns:
        (size, size, 3) uint8 RGB crop, and ``hv.stain.AS_IS``, ``LAMP`` or ``STAIN``: what the
        correction did (always ``AS_IS`` with ``stain_correction = "off"``).
    """
    height, width = image_rgb.shape[:2]
    if diameter_px is None:
        diameter_px = cell_diameter_px(image_rgb, config)
    x1, y1, x2, y2 = (float(v) for v in box_xyxy)
    side = max(config.crop_context * diameter_px, x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    side_px = int(round(side))
    pad = max(0, -left, -top, left + side_px - width, top + side_px - height)
    if pad and (config.edge_fill == "black" or min(height, width) < 2):
        # A 1-pixel-high or -wide frame has nothing to reflect: black, as a data set's rotated corners.
        padded = cv2.copyMakeBorder(image_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        left, top = left + pad, top + pad
    elif pad:
        # Reflection needs the pad to be smaller than the image; repeat for tiny frames.
        padded = image_rgb
        remaining = pad
        while remaining > 0:
            step = min(remaining, padded.shape[0] - 1, padded.shape[1] - 1)
            padded = cv2.copyMakeBorder(padded, step, step, step, step, cv2.BORDER_REFLECT_101)
            remaining -= step
        left, top = left + pad, top + pad
    else:
        padded = image_rgb
    window = padded[top : top + side_px, left : left + side_px]
    interpolation = cv2.INTER_AREA if side_px > size else cv2.INTER_LINEAR
    crop = cv2.resize(window, (size, size), interpolation=interpolation)
    if config.stain_correction == "off":
        return crop, AS_IS
    return recoloured(crop, always=config.stain_correction == "always")
