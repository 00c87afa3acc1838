"""The cell scale of a frame, measured from its red cells.

Red cells are the natural ruler of a blood smear: about 7.5 µm across in every lab, many
in every field, and unlike white cells their size says nothing about the class. A frame's
expected white-cell diameter is a fixed multiple of its red-cell diameter, so fields from
another objective, camera or lab are cropped at the same physical scale without a setting.

How: red cells absorb green light (haemoglobin), so on the green channel they are darker
than the plasma. Pixels darker than the plasma by a share of the plasma-to-red-cell
contrast are "cell"; stained (purple) pixels are left out of that contrast so that a dark
nucleus cannot pull the threshold. Regions that hold stained pixels are white cells (or
touch one) and are left out while enough others remain. The pale centre of a red cell is a hole in that mask
and is filled. The distance transform's maximum inside each connected region is that
region's inscribed radius: for a lone red cell its radius, for a clump of overlapping red
cells more. Their median (preferring regions that the frame edge does not cut) is a first
estimate r; then, for a few rounds, r becomes the median height of the distance
transform's peaks that are the highest within a window r wide and over r / 2 high, which
finds each member of a clump separately.
"""

from __future__ import annotations

import cv2
import numpy as np

# The constants below (up to _PEAK_ROUNDS) were chosen against the annotated red-cell boxes of
# the BCCD fields, the originals of blood-cells/TEST (BENCHMARKS.md says so beside the figures).
# Threshold at this share of the way from the plasma level to the dark red-cell level.
_CONTRAST_SHARE = 0.4
# Percentiles of the green channel taken as the plasma and the red-cell levels.
_PLASMA_PERCENTILE, _RED_CELL_PERCENTILE = 95, 10
# Pixels bluer than the field by this much (hv.locator.purple_score units) are stain, not red cell.
_STAINED = 20
# A region with more than _NUCLEUS_AREA x width^2 pixels this stained holds a white cell's nucleus.
_NUCLEUS, _NUCLEUS_AREA = 45, 0.002
# Holes smaller than this share of the frame width squared are red-cell centres (filled);
# larger ones are plasma between cells.
_MAX_HOLE = 0.02
# Regions narrower than this share of the widest region, or than _MIN_RADIUS_PX, are noise
# or platelets; fewer than _MIN_REGIONS regions inside the frame and edge regions count too.
_MIN_SHARE, _MIN_RADIUS_PX, _MIN_REGIONS = 0.45, 3.0, 3
# Rounds of peak finding, each with a window the size of the last radius: a field of large
# overlapping clumps starts too wide and narrows to single cells; lone cells stay put.
_PEAK_ROUNDS = 3
# Peak heights that spread wider than this (interquartile range / median) are no single cell
# size: the frame is not measured. Chosen on blood-cells/TRAIN, where it drops about half of
# the frames whose measurement is off by 1.5x or more and 4 % of the others.
_MAX_SPREAD = 0.6


def red_cell_diameter_px(image_rgb: np.ndarray, work_width_px: int = 320) -> float | None:
    """Typical red-cell diameter in a frame, in the frame's pixels.

    Args:
        image_rgb: (H, W, 3) uint8 RGB field.
        work_width_px: the frame is measured at this width (speed); the result is in full-size pixels.

    Returns:
        The diameter, or None when the frame shows no measurable red cells (blank, all
        plasma, a frame filled by one cell, too small) or its red cells give no one size.
    """
    from hv.locator import purple_score  # the locator imports this module

    height, width = image_rgb.shape[:2]
    if min(height, width) < 16:
        return None
    scale = min(1.0, work_width_px / width)
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    green = cv2.GaussianBlur(small[..., 1], (0, 0), 1.0)
    valid = small.max(axis=2) > 25  # rotated training copies have black corners
    score = purple_score(small)
    stained = score > _STAINED
    levels = green[valid & ~stained]
    if levels.size < 64:
        return None
    plasma, red_cell = np.percentile(levels, [_PLASMA_PERCENTILE, _RED_CELL_PERCENTILE])
    if plasma - red_cell < 8:  # no contrast: a blank or overexposed frame
        return None
    cells = ((green < plasma - _CONTRAST_SHARE * (plasma - red_cell)) & valid).astype(np.uint8)

    # The frame edge and the black corners: a region touching them is cut.
    edge = ~valid
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    edge = cv2.dilate(edge.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0

    count, holes, stats, _ = cv2.connectedComponentsWithStats(1 - cells, connectivity=4)
    open_hole = np.zeros(count, bool)
    open_hole[np.unique(holes[edge])] = True
    fill = (stats[:, cv2.CC_STAT_AREA] < _MAX_HOLE * small.shape[1] ** 2) & ~open_hole
    cells[fill[holes] & (cells == 0)] = 1
    cells = cv2.morphologyEx(cells, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))

    distance = cv2.distanceTransform(cells, cv2.DIST_L2, 5)
    count, regions = cv2.connectedComponents(cells, connectivity=8)
    radii = np.zeros(count, np.float32)
    np.maximum.at(radii, regions.ravel(), distance.ravel())
    radii[0] = 0
    cut = np.zeros(count, bool)
    cut[np.unique(regions[edge])] = True
    # Regions holding a nucleus's worth of strongly stained pixels: a white cell, or red cells touching one.
    nucleus_pixels = np.bincount(regions[score > _NUCLEUS], minlength=count)
    white = nucleus_pixels > _NUCLEUS_AREA * small.shape[1] ** 2
    white[0] = False
    red = ~white if (~white[1:]).sum() >= 2 else np.ones(count, bool)
    sized = (radii > max(_MIN_RADIUS_PX, _MIN_SHARE * radii[red].max())) & red
    chosen = sized & ~cut
    if chosen.sum() < _MIN_REGIONS:
        chosen = sized
    if chosen.sum() < 2:
        return None
    distance[~red[regions]] = 0
    radius = float(np.median(radii[chosen]))
    for _ in range(_PEAK_ROUNDS):
        window = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (max(3, int(radius) | 1),) * 2)
        peaks = (distance >= cv2.dilate(distance, window)) & (distance > radius / 2) & ~edge
        heights = distance[peaks]
        if heights.size < _MIN_REGIONS:
            break
        radius = float(np.median(heights))
    if heights.size >= _MIN_REGIONS:
        low, high = np.percentile(heights, [25, 75])
        if high - low > _MAX_SPREAD * radius:
            return None
    return 2 * radius / scale


# A white cell is wider than its nucleus (its largest lobe, for a neutrophil), and the nucleus
# is a good part of it: an expected diameter outside these multiples of the largest nucleus
# blob's equivalent diameter is a mismeasured frame. On the even-positioned half of the BCCD
# fields (where the locator's other constants were chosen) the annotated box side is 1.20-2.31
# times it (min-max, 91 single-cell fields); the bounds leave a margin on both sides.
CELL_OVER_NUCLEUS = (1.1, 2.5)
# Blobs smaller than this share of the frame are platelets or noise, not a nucleus.
MIN_NUCLEUS_SHARE = 0.004


def nucleus_diameter_px(image_rgb: np.ndarray, work_width_px: int = 320) -> float | None:
    """Equivalent diameter of the largest stained (nucleus) blob, in frame pixels; None if none.

    Needs no scale: stained pixels are those well bluer than the field (Otsu on
    ``purple_score``, as the locator), and only blobs over a small share of the frame count.
    """
    from hv.locator import purple_score

    height, width = image_rgb.shape[:2]
    if min(height, width) < 16:
        return None
    scale = min(1.0, work_width_px / width)
    small = cv2.resize(image_rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image_rgb
    score = np.clip(cv2.GaussianBlur(purple_score(small).astype(np.float32), (0, 0), 1.0), 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(score, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = (score > max(otsu, _NUCLEUS)).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count < 2:
        return None
    area = int(stats[1:, cv2.CC_STAT_AREA].max())
    if area < MIN_NUCLEUS_SHARE * small.shape[0] * small.shape[1]:
        return None
    return float(np.sqrt(4 * area / np.pi) / scale)
