"""Classify every white cell in still field images: boxes, labels, an annotated copy, a CSV."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from hv.classifier import Classifier
from hv.config import Config
from hv.field_of_view import whole_in_view
from hv.illumination import DIM_BELOW, evened_still
from hv.jpeg_blocks import jpeg_quality
from hv.labels import CLASS_COLOURS_BGR, OUTPUT_NAMES
from hv.locator import ONE_FIELD_SPREAD, cell_diameter_px, crop_cell, locate_cells, small_cells_note
from hv.noise import noise_level, noisy_note
from hv.preprocess import IMAGE_SUFFIXES, ImageReadError, read_image_rgb

log = logging.getLogger(__name__)



class FieldCells(NamedTuple):
    """The white cells of one still image."""

    boxes: np.ndarray  # (n, 4) xyxy in image pixels, largest nucleus first
    probs: np.ndarray  # (n, 5) class probabilities, "other" last
    whole: np.ndarray  # (n,) bool; False: the image edge or a round view's rim may cut the cell (the stream would
    # not classify it)
    diameter_px: float  # the expected cell diameter the cells were located and cropped at
    evened_darkest: float | None = None  # lit unevenly: the light's darkest point over its brightest (hv.illumination)
    noise: float | None = None  # the camera's noise at the classifier's scale (hv.noise); None where not read


def classify_image(classifier: Classifier, image_rgb: np.ndarray, config: Config) -> FieldCells:
    """Locate and classify the white cells of one field.

    A still image cannot be panned, so a cell the image edge may cut (within
    ``stream.edge_margin_frac`` diameters of it, or of the rim of a round field of view: a photo
    through an eyepiece, ``hv.field_of_view``) is classified too, and marked, so that a user
    can check it: the live count would not classify that view.
    """
    height, width = image_rgb.shape[:2]
    image_rgb, view, evened_darkest = evened_still(image_rgb, config.locator.uneven_light_below,
                                                   config.stream.motion_width_px)
    diameter = cell_diameter_px(image_rgb, config.locator)
    boxes = locate_cells(image_rgb, config.locator, diameter)
    if not len(boxes):
        return FieldCells(boxes, np.zeros((0, len(OUTPUT_NAMES)), np.float32), np.zeros(0, bool), diameter,
                          evened_darkest)
    noise = noise_level(image_rgb, diameter, config.locator.crop_context, classifier.image_size, cv2.COLOR_RGB2GRAY)
    crops = np.stack([crop_cell(image_rgb, box, config.locator, classifier.image_size, diameter) for box in boxes])
    whole = whole_in_view(boxes, (width, height), config.stream.edge_margin_frac * diameter, view)
    return FieldCells(boxes, classifier.predict(crops), whole, diameter, evened_darkest, noise)


def noise_in_field(cells: FieldCells, config: Config) -> str | None:
    """What to tell the user when a still image's cells were found in an image noisier than the model learnt from."""
    return noisy_note(cells.noise, config.stream.noise_max)


def uneven_light_in_field(cells: FieldCells) -> str | None:
    """What to tell the user when a still image was lit unevenly and evened before its cells were looked for."""
    if cells.evened_darkest is None:
        return None
    return (f"lit unevenly (its darkest part at {100 * cells.evened_darkest:.0f} % of its brightest): evened before "
            f"cells were looked for, and a cell where the light is under {100 * DIM_BELOW:.0f} % is marked cut; "
            f"centre the lamp and the condenser or the camera adapter for the surest labels")


def small_cells_in_field(cells: FieldCells, config: Config) -> str | None:
    """What to tell the user when a field's cells are fewer pixels across than the model learnt from; else None.

    One field's scale estimate spreads wider than a stream's, so the bar is ``ONE_FIELD_SPREAD`` of
    ``locator.min_cell_diameter_px`` (a field with no cell found says nothing).
    """
    if not len(cells.boxes):
        return None
    return small_cells_note(cells.diameter_px, ONE_FIELD_SPREAD * config.locator.min_cell_diameter_px,
                            setting=f"{ONE_FIELD_SPREAD:g} x locator.min_cell_diameter_px for one image")


def compression_in_image(image_rgb: np.ndarray, config: Config) -> str | None:
    """What to tell the user when an image was saved as JPEG under ``stream.jpeg_quality_min``; else None.

    The stream skips a camera's frames that are so compressed (``stream.frame_quality``); one image is classified
    all the same, since the user may hold no better copy, and the note says its labels are less sure.
    """
    bar = config.stream.jpeg_quality_min
    quality = jpeg_quality(image_rgb[..., ::-1]) if bar else None
    if quality is None or quality >= bar:
        return None
    return (f"saved as JPEG at about quality {quality:.0f} (under {bar:g}, stream.jpeg_quality_min): its blocks "
            f"wash out granules and chromatin, so labels are less sure; save at 30 or more, or as PNG")


def draw_cells(image_rgb: np.ndarray, boxes: np.ndarray, probs: np.ndarray,
               whole: np.ndarray | None = None) -> np.ndarray:
    """A BGR copy of the field with each cell's box, label and confidence; a cell the edge may cut is marked "cut"."""
    canvas = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    whole = np.ones(len(boxes), bool) if whole is None else whole
    for box, prob, is_whole in zip(boxes.astype(int), probs, whole):
        label = int(prob.argmax())
        colour = CLASS_COLOURS_BGR[label]
        cv2.rectangle(canvas, tuple(box[:2]), tuple(box[2:]), colour, 2 if is_whole else 1)
        text = f"{OUTPUT_NAMES[label]} {prob[label]:.0%}" + ("" if is_whole else " (cut)")
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
        top = max(box[1], h + 4)
        cv2.rectangle(canvas, (box[0], top - h - 4), (box[0] + w + 4, top), colour, -1)
        cv2.putText(canvas, text, (box[0] + 2, top - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def classify_fields(classifier: Classifier, images: list[Path], config: Config, out_dir: Path) -> int:
    """Classify each image's cells; write ``<name>.annotated.png`` and one ``cells.csv`` row per cell.

    A folder among ``images`` stands for the image files in it (and its sub-folders).
    Unreadable or missing files, and folders without an image file, are skipped and listed at
    the end; the others are still processed. Two inputs with the same file name get distinct
    annotated files (``-2``, ``-3``...); ``cells.csv`` names each image by the path it was given
    as. ``cells.csv`` is written under a temporary name and renamed when every image is done.

    Returns:
        Number of cells found.

    Raises:
        ImageReadError: not one image could be read (every reason named); no ``cells.csv`` is left,
            since an empty one would read as "no cells found".
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, skipped = expand_images(images)
    found, done, used_names = 0, 0, set()
    partial = out_dir / "cells.csv.partial"
    with partial.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "x", "y", "w", "h", "label", "confidence", "view", "cell_diameter_px"])
        for path in paths:
            try:
                image = read_image_rgb(str(path))
            except ImageReadError as exc:
                log.error("skipped %s", exc)
                skipped.append(str(exc))
                continue
            cells = classify_image(classifier, image, config)
            boxes, probs, whole, diameter = cells.boxes, cells.probs, cells.whole, cells.diameter_px
            for note in (small_cells_in_field(cells, config), compression_in_image(image, config),
                         uneven_light_in_field(cells), noise_in_field(cells, config)):
                if note:
                    print(f"{path}: {note}")
            for box, prob, is_whole in zip(boxes, probs, whole):
                x1, y1, x2, y2 = (int(round(v)) for v in box)
                label, confidence = OUTPUT_NAMES[prob.argmax()], prob.max()
                view = "whole" if is_whole else "cut"
                writer.writerow([str(path), x1, y1, x2 - x1, y2 - y1, label, f"{confidence:.4f}", view,
                                 f"{diameter:.1f}"])
                note = "" if is_whole else " (cut: at the image edge or a round view's rim, the cell may be cut off)"
                print(f"{path}: {label} ({confidence:.0%}) at x={x1} y={y1} w={x2 - x1} h={y2 - y1}{note}")
            if not len(boxes):
                print(f"{path}: no white cell found")
            name = _unique_name(path.stem, used_names)
            cv2.imwrite(str(out_dir / f"{name}.annotated.png"), draw_cells(image, boxes, probs, whole))
            found, done = found + len(boxes), done + 1
    if not done:
        partial.unlink()
        raise ImageReadError(f"no image classified, nothing written: {'; '.join(skipped) or 'no input given'}")
    partial.replace(out_dir / "cells.csv")
    print(f"{found} cells in {done} images; annotated images and cells.csv in {out_dir}")
    if skipped:
        print(f"{len(skipped)} inputs skipped:\n" + "\n".join(f"  {reason}" for reason in skipped))
    return found


def expand_images(inputs: list[Path]) -> tuple[list[Path], list[str]]:
    """The inputs with each folder replaced by the image files under it, sorted; other paths as given.

    Also one line for each folder that holds no image file (a wrong folder, or images of another type).
    """
    paths: list[Path] = []
    empty: list[str] = []
    for path in inputs:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                empty.append(f"{path}: a folder with no image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        else:
            paths.append(path)
    return paths, empty


def _unique_name(stem: str, used: set[str]) -> str:
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}-{n}"
    used.add(name)
    return name
