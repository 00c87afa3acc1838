"""Stain: optical density, whether an image has colour at all, whether red cells are eosin-pink, and a crop
turned to the training labs' colours.

The locator uses optical density and the pink test (it searches nuclei of another colour where red
cells are not pink); image reading and the stream's frame check use the colour test (a monochrome
camera gives none of the colours that tell the classes apart); ``hv.locator.crop_cell`` uses the
correction (``locator.stain_correction``).

Both training labs stain with a Romanowsky-type stain: red cells pink, nuclei blue-purple. A
lab with another stain (brown-red nuclei and a yellow eosin, say) gives the classifier
colours it never learnt; augmentation can turn hues only so far before the training labs'
own cells suffer (BENCHMARKS.md, "The nucleus stain's hue alone"). So such crops are
corrected before classifying, and only they: where ``red_cells_pink`` holds (and the lamp is
like the training labs', below), the crop is returned unchanged, so every training crop and
every Romanowsky-stained frame under such a lamp is classified exactly as before.

The correction works in optical density (Beer-Lambert: stains add there). The plasma's density
(the least dense 5 % of the crop: the lamp and the background tint) is taken off; the rest is
turned, as one rotation of the density space, so that the red cells' colour (the mean of the
pixels between the 50th and 85th percentile of density: mostly red cells, in any crop)
points where the training labs' red cells point; the training labs' plasma is put back.
A rotation keeps the length of every pixel's density (above the plasma), so a nucleus stays
about as dark as it was; a nucleus whose stain lay near the red cells' keeps that nearness.
Red cells are the anchor because every crop holds many of them and their colour is the
eosin's; a nucleus-based anchor read worse on validation (BENCHMARKS.md, "Turning another
stain's colours back").

A lamp of another colour leaves red cells pink but tints the plasma. A crop whose plasma lies
outside the training labs' colours (``LAMP_BLUE_MINUS_RED``) gets the training labs' plasma,
without a turn (BENCHMARKS.md, "A lamp of another colour").

The reference directions are measured on training crops by ``benchmarks/stain_reference.py``.
"""

from __future__ import annotations

import cv2
import numpy as np

# The training labs' red-cell colour (a unit vector of optical density over R, G, B, plasma taken
# off) and plasma density: the mean of the two labs' medians over their training crops
# (benchmarks/stain_reference.py, 2026-12-07: blood-cells/TRAIN and pbc/TRAIN, 400 crops each).
REFERENCE_RED_OD = np.array([0.488, 0.813, 0.318])
REFERENCE_PLASMA_OD = np.array([0.075, 0.130, 0.195])
# Red cells are eosin-pink in Romanowsky-type stains: they absorb more green than blue. Green / blue
# absorption of the stained pixels (benchmarks/locator_other_stains.py --other-stain-thresholds):
# PBC images 2.0-3.3, and at least 1.84 under a warm lamp, a faded stain, a soft camera or a zoom;
# drawn with a yellow eosin and brown-red nuclei (synthetic_labs.py) at most 0.73. Half-size BCCD
# views without a white cell read 0.85-2.3 (a view of plasma and a few red cells can fall under
# 0.9 and get the lower search; views with a cell invented stay as many), drawn brown-red at most 0.90.
# The crops training cuts read at least 1.02 (blood-cells/TRAIN) and 2.34 (pbc/TRAIN), blood-cells/TEST's
# at least 0.92 (benchmarks/stain_reference.py --gate-all): none is corrected.
PINK_GREEN_OVER_BLUE = 0.9
# A lamp of another colour adds the same density to every pixel, and the plasma shows it. Every
# training crop's plasma has a blue-minus-red density within -0.06 to 0.25 (blood-cells/TRAIN -0.06
# to 0.06, pbc/TRAIN and pbc/OTHER -0.01 to 0.25: benchmarks/stain_reference.py --gate-all); a crop
# whose plasma lies beyond these bounds, set about 0.1 further (a warmer or a cooler lamp), gets the
# training labs' plasma. Under synthetic_labs.py's warm lamp: 0.43 and more.
LAMP_BLUE_MINUS_RED = (-0.15, 0.33)
# Red cells are the pixels between these percentiles of density above the plasma: above the
# plasma and pale cytoplasm, below the nuclei and granules.
RED_PERCENTILES = (50, 85)
# Plasma: the least dense share of the crop's pixels.
PLASMA_PERCENTILE = 5
# An image whose pixels nearly all hold R = G = B within this many 8-bit levels (``colour_spread``) has no
# colour: a greyscale file (0) or a monochrome camera (3 through a video codec's colour planes). Every image
# of blood-cells/, bccd/ and pbc/ reads 29 or more, and so do 200 of each drawn with synthetic_labs.py's
# faded stain, warm lamp, brown-red stain or soft camera (benchmarks/frame_checks.py --parts colour).
NO_COLOUR_SPREAD = 8


def sparse_pixels(image: np.ndarray) -> np.ndarray:
    """(n, 3) pixels of an (H, W, 3) image on a sparse grid: every 8th each way, fewer on images over 640 px
    (at most about 80 a side), so that a check on them costs at 1920 x 1080 what it costs at 640 x 480."""
    step = max(8, max(image.shape[:2]) // 80)
    return image[::step, ::step].reshape(-1, 3)


def colour_spread(image: np.ndarray) -> float:
    """How far an (H, W, 3) uint8 image's pixels are from grey: over ``sparse_pixels``, the 99th percentile
    of each pixel's largest minus smallest channel (8-bit levels; 0 for an empty image)."""
    sample = sparse_pixels(image)
    if not sample.size:
        return 0.0
    return float(np.percentile(sample.max(axis=1).astype(np.int16) - sample.min(axis=1), 99))


def has_no_colour(image: np.ndarray) -> bool:
    """Whether an image (RGB or BGR) is grey: without the stains' colours that tell the classes apart."""
    return colour_spread(image) <= NO_COLOUR_SPREAD


def optical_density(rgb: np.ndarray) -> np.ndarray:
    """Per channel, how much light the stain takes: -ln of the transmitted share (8-bit values, +1 so 0 is finite)."""
    return -np.log((rgb.astype(np.float32) + 1.0) / 256.0)


def _density_sample(image_rgb: np.ndarray) -> np.ndarray:
    """Optical density (float32) of every 4th pixel each way (the colours at 1/16 of the cost), near-black left out.

    Rotated training images' black corners and a black edge fill carry no stain. Measured once per
    image and shared by the gates and the correction below.
    """
    sample = image_rgb[::4, ::4].reshape(-1, 3)
    return optical_density(sample[sample.max(axis=1) > 25])


def green_over_blue(image_rgb: np.ndarray) -> float:
    """How much more green than blue light the field's stained pixels absorb (optical density above the plasma's).

    The stained pixels are the densest 40 % of the field: mostly red cells. Measured from the
    plasma (the brightest 5 %), a lamp's colour, which adds the same density everywhere, cancels.
    """
    return _green_over_blue(_density_sample(image_rgb))


def _green_over_blue(pixels: np.ndarray) -> float:
    if len(pixels) < 16:
        return float("inf")  # nothing to measure: taken as pink, the stricter search
    total = pixels.sum(axis=1)
    stained = pixels - pixels[total <= np.percentile(total, 5)].mean(axis=0)
    stained = stained[total >= np.percentile(total, 60)].mean(axis=0)
    return float(stained[1] / max(float(stained[2]), 1e-3))


def red_cells_pink(image_rgb: np.ndarray) -> bool:
    """Whether the field's red cells are eosin-pink (a Romanowsky-type stain), from ``green_over_blue``."""
    return green_over_blue(image_rgb) >= PINK_GREEN_OVER_BLUE


# optical_density of each 8-bit value, looked up instead of computed per pixel.
_DENSITY_OF_VALUE = optical_density(np.arange(256))


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def rotation_between(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 3x3 rotation that turns direction ``source`` onto ``target`` about their common normal (Rodrigues)."""
    a, b = _unit(np.asarray(source, np.float64)), _unit(np.asarray(target, np.float64))
    axis = np.cross(a, b)
    sine, cosine = float(np.linalg.norm(axis)), float(a @ b)
    if sine < 1e-9:
        return np.eye(3)  # already aligned (the opposite, impossible for densities, is left alone too)
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + skew + skew @ skew * ((1 - cosine) / sine**2)


def stain_anchors(image_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(red cells' density direction, plasma density) of an image, or None with too few pixels to tell.

    Every 4th pixel each way is measured; near-black pixels (a data set's rotated corners, a
    black edge fill) carry no stain and are left out.
    """
    return _stain_anchors(_density_sample(image_rgb))


def _stain_anchors(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if len(pixels) < 64:
        return None
    density = pixels.astype(np.float64)
    total = density.sum(axis=1)
    plasma = density[total <= np.percentile(total, PLASMA_PERCENTILE)].mean(axis=0)
    stained = density - plasma
    above = stained.sum(axis=1)
    low, high = np.percentile(above, RED_PERCENTILES)
    red = stained[(above >= low) & (above <= high)].mean(axis=0)
    if float(np.linalg.norm(red)) < 1e-3:
        return None  # a blank view: nothing to turn
    return _unit(red), plasma


def to_training_stain(image_rgb: np.ndarray, turn_stain: bool = True) -> np.ndarray:
    """The image with its red cells' colour turned to the training labs' (see the module's docstring).

    Args:
        image_rgb: (H, W, 3) uint8 RGB.
        turn_stain: False: only the plasma (the lamp's colour) is replaced.

    Returns:
        (H, W, 3) uint8 RGB; near-black pixels are kept as they are.
    """
    return _restained(image_rgb, stain_anchors(image_rgb), turn_stain)


def _restained(image_rgb: np.ndarray, anchors: tuple[np.ndarray, np.ndarray] | None, turn_stain: bool) -> np.ndarray:
    if anchors is None:
        return image_rgb
    red, plasma = anchors
    turn = rotation_between(red, REFERENCE_RED_OD) if turn_stain else np.eye(3)
    # float32, a lookup table and OpenCV: a 224-pixel crop in about 3 ms where float64 NumPy took 7.
    density = _DENSITY_OF_VALUE[image_rgb]
    turned = cv2.transform(density - plasma.astype(np.float32), turn.astype(np.float32))
    turned += REFERENCE_PLASMA_OD.astype(np.float32)
    rgb = np.clip(256.0 * cv2.exp(-turned) - 1.0, 0, 255).astype(np.uint8)
    dark = image_rgb.max(axis=2) <= 25
    rgb[dark] = image_rgb[dark]
    return rgb


def lamp_like_training(image_rgb: np.ndarray) -> bool:
    """Whether the image's plasma has the colour of the training labs' (``LAMP_BLUE_MINUS_RED``)."""
    return _lamp_like_training(stain_anchors(image_rgb))


def _lamp_like_training(anchors: tuple[np.ndarray, np.ndarray] | None) -> bool:
    if anchors is None:
        return True
    blue_minus_red = float(anchors[1][2] - anchors[1][0])
    return LAMP_BLUE_MINUS_RED[0] <= blue_minus_red <= LAMP_BLUE_MINUS_RED[1]


# What the correction did to a crop: nothing, the plasma replaced (a lamp of another colour), or the
# colours turned (another stain). The stream reports it per cell: a count resting on recoloured crops
# comes from a microscope unlike the training labs'.
AS_IS, LAMP, STAIN = "", "lamp", "stain"


def recoloured(crop_rgb: np.ndarray, always: bool = False) -> tuple[np.ndarray, str]:
    """The crop as the classifier should see it, and which correction its colours call for (``AS_IS``, ``LAMP``,
    ``STAIN``).

    Unchanged where its red cells are pink and its plasma of the training labs' colour; with the
    training labs' plasma where only the lamp differs; else ``to_training_stain``. With ``always``
    every crop is turned and given the training labs' plasma (``locator.stain_correction =
    "always"``), and the answer still says what its colours called for. The crop's densities are
    sampled once for both gates and the correction: this runs on every crop the stream
    classifies. An image with nothing to measure (blank, black) is left as it is.
    """
    pixels = _density_sample(crop_rgb)
    pink = _green_over_blue(pixels) >= PINK_GREEN_OVER_BLUE
    anchors = _stain_anchors(pixels)
    if anchors is None:
        return crop_rgb, AS_IS
    how = STAIN if not pink else AS_IS if _lamp_like_training(anchors) else LAMP
    if always:
        return _restained(crop_rgb, anchors, turn_stain=True), how
    if how == AS_IS:
        return crop_rgb, AS_IS
    return _restained(crop_rgb, anchors, turn_stain=how == STAIN), how


def corrected_stain(crop_rgb: np.ndarray) -> np.ndarray:
    """The crop as the classifier should see it (``recoloured`` without saying which correction)."""
    return recoloured(crop_rgb)[0]
