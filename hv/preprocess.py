"""The model-input contract, written once: raw RGB uint8 in, float32 (S, S, 3) in [0, 255] out.

Normalisation is inside every model, so nothing here rescales. Training (through
``training/data.py``), the stream, evaluation and the TFLite check all call these
functions; ``tests/hv/test_preprocess.py`` pins the NumPy and TensorFlow paths together.
"""

from __future__ import annotations

import cv2
import numpy as np

from hv.config import Config
from hv.field_of_view import whole_in_view
from hv.illumination import evened_still
from hv.locator import cell_diameter_px, crop_cell, locate_cells
from hv.stain import has_no_colour

# Why an image without colour is not used (``hv.stain.has_no_colour``), for every path that reads one.
NO_COLOUR = ("no colour (a greyscale image, or nothing stained in view): the stains' colours tell the classes "
             "apart; use a colour image or camera")
# File types read as images, by data discovery and by the commands that take folders.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class ImageReadError(ValueError):
    """A file could not be used as an image: unreadable, undecodable, or without colour."""


def read_image_rgb(path: str, require_colour: bool = True) -> np.ndarray:
    """Decode an image file into (H, W, 3) uint8 RGB (grayscale and alpha are converted).

    Args:
        path: the file.
        require_colour: refuse an image with no colour (``hv.stain.has_no_colour``). The stream's image-folder
            source passes False: its frame check says "no colour" for each such frame, as for a camera's.

    Raises:
        ImageReadError: missing, empty or undecodable file, or (``require_colour``) one with no colour.
    """
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:  # missing, a folder, unreadable
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if data.size == 0:
        raise ImageReadError(f"{path}: empty file")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"{path}: not a decodable image")
    if require_colour and has_no_colour(image):
        raise ImageReadError(f"{path}: {NO_COLOUR}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_field(image_rgb: np.ndarray, size: int) -> np.ndarray:
    """Whole field scaled to (size, size), uint8 RGB."""
    return cv2.resize(image_rgb, (size, size), interpolation=cv2.INTER_AREA)


# How the classifier saw a one-cell image's cell (``field_view``).
VIEWS = ("whole", "cut", "not_located", "field")


def field_view(image_rgb: np.ndarray, config: Config) -> tuple[np.ndarray, str]:
    """What the classifier sees for a one-cell field image, and how it saw the cell.

    With ``data.input = "cell"`` it is the crop around the largest located white cell: a
    "whole" view if its box keeps ``stream.edge_margin_frac`` expected diameters from every
    image edge and from a round field stop's shadow (``hv.field_of_view``; in blood-cells/, the
    black fill of its rotated copies), else "cut" (the stream would not classify that view). An image lit
    unevenly (a vignette) is evened first (``hv.illumination``). If no cell is found,
    the crop around the field's centre (data sets centre their cell), "not_located", so that
    no image is silently dropped from an evaluation. With ``data.input = "field"``, the
    whole image resized: "field".

    Returns:
        ((S, S, 3) uint8 RGB, one of ``VIEWS``).
    """
    size = config.model.image_size
    if config.data.input == "field":
        return resize_field(image_rgb, size), "field"
    height, width = image_rgb.shape[:2]
    image_rgb, view, _ = evened_still(image_rgb, config.locator.uneven_light_below, config.stream.motion_width_px)
    diameter = cell_diameter_px(image_rgb, config.locator)  # measured once, for the locator and the crop
    boxes = locate_cells(image_rgb, config.locator, diameter)
    if len(boxes):
        whole = whole_in_view(boxes[:1], (width, height), config.stream.edge_margin_frac * diameter, view)[0]
        return crop_cell(image_rgb, boxes[0], config.locator, size, diameter), "whole" if whole else "cut"
    centre = np.array([width / 2, height / 2, width / 2, height / 2], np.float32)
    return crop_cell(image_rgb, centre, config.locator, size, diameter), "not_located"


def field_to_model_input(image_rgb: np.ndarray, config: Config) -> tuple[np.ndarray, bool]:
    """``field_view``'s crop, and whether a cell was located."""
    crop, view = field_view(image_rgb, config)
    return crop, view != "not_located"


def to_model_batch(crops_rgb: np.ndarray) -> np.ndarray:
    """Stack of (S, S, 3) uint8 RGB crops -> the model's float32 input, pixel values kept."""
    crops = np.asarray(crops_rgb)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"expected (n, S, S, 3) RGB crops, got shape {crops.shape}")
    return crops.astype(np.float32)
