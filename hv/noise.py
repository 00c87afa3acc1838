"""A camera's noise, read from a frame at the scale the classifier sees its cells.

A dim view shot at a high gain (a phone, a cheap camera, a lamp turned low) is grainy, and graininess
looks like granules: on the counting benchmark's slide, noise of 16 grey levels (standard deviation) left
the count right but made half the neutrophils eosinophils (labels agreeing 63 % against 92 %; 8 levels: 86 %;
4: as without: BENCHMARKS.md, "A noisy camera"). Nothing the model learnt from is that noisy, so hv says so.

The read is Immerkaer's (1996): the frame in grey is filtered with a kernel that cancels any plane and any
smooth curvature, and the mean of the absolute result, scaled, estimates the noise's standard deviation.
Edges and fine texture add a little. The read is taken at the camera's own pixels and scaled to the
classifier's crop (the crop's side, ``crop_context`` expected cell diameters, resized to the model's input):
a camera of many pixels whose grain the crop averages away is not said to be noisy; an enlarged crop keeps
the grain it has.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def noise_level(image: np.ndarray, diameter_px: float, crop_context: float, input_size: int,
                to_grey: int = cv2.COLOR_BGR2GRAY) -> float:
    """The noise's standard deviation in grey levels (0-255) at the classifier's scale.

    ``image``: the frame (BGR, or RGB with ``to_grey = cv2.COLOR_RGB2GRAY``); ``diameter_px``: its expected cell
    diameter; ``crop_context``, ``input_size``: the crop's side in diameters and the model's input side.
    """
    grey = cv2.cvtColor(image, to_grey)
    if min(grey.shape) < 3:
        return 0.0
    response = cv2.filter2D(grey.astype(np.float32), cv2.CV_32F, _KERNEL)[1:-1, 1:-1]
    # Read at the camera's own pixels, where the smear's detail is smooth and the grain is not, then scaled by
    # what the crop's shrinking (hv.locator: area interpolation) leaves of independent grain.
    scale = input_size / (crop_context * max(diameter_px, 1.0))
    left = _area_factor(round(scale, 2)) if scale < 1.0 else 1.0
    return float(left * np.sqrt(np.pi / 2) * np.abs(response).mean() / 6)


@functools.lru_cache(maxsize=256)
def _area_factor(scale: float) -> float:
    """The share of independent grain's standard deviation left after ``cv2.resize`` with area interpolation by
    ``scale`` (under 1), measured once on drawn noise."""
    grain = np.random.default_rng(0).normal(0, 1, (512, 512)).astype(np.float32)
    return float(cv2.resize(grain, None, fx=max(scale, 0.01), fy=max(scale, 0.01), interpolation=cv2.INTER_AREA).std())


def noisy_note(level: float | None, bar: float) -> str | None:
    """What to tell the user when the camera's noise is above ``bar`` (``stream.noise_max``; 0: never); else None."""
    if not bar or level is None or level <= bar:
        return None
    return (f"camera noisy (noise {level:.1f} > {bar:g} grey levels): grain looks like granules, labels less sure; "
            f"give the view more light and the camera less gain")
