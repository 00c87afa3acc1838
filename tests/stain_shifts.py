"""Another lab's stain for tests: the training labs' colours redrawn with brown-red nuclei and a yellow eosin."""

import numpy as np

from hv.stain import optical_density
from training.augment import RGB_FROM_HED

# Rows: the optical density a unit of each stain adds to R, G, B (haematoxylin drawn brown-red, eosin
# yellow; the third, DAB, kept).
BROWN_RED = np.stack([[0.30, 0.62, 0.72], [0.08, 0.30, 0.95], RGB_FROM_HED[2]])
BROWN_RED[:2] /= np.linalg.norm(BROWN_RED[:2], axis=1, keepdims=True)


def restained(image_rgb: np.ndarray, stains: np.ndarray = BROWN_RED) -> np.ndarray:
    """The image's stain amounts (colour deconvolution) drawn with other stain colours."""
    amounts = optical_density(image_rgb).astype(np.float64) @ np.linalg.inv(RGB_FROM_HED.astype(np.float64))
    return np.clip(256 * np.exp(-(amounts @ stains)) - 1, 0, 255).astype(np.uint8)
