"""What the model sees of one cell at a lower magnification: the bundled sample fields shrunk 1x-0.25x.

Each sample field (``hv/bundled/fields``, one per class; BCCD originals, so the labels are not a
figure, only an illustration) is shrunk by area averaging as a lower magnification would show it,
then located and cropped as ``hv classify`` does. Each row is one field, each column one zoom; under
each crop: the zoom, the expected cell diameter in the shrunk field's pixels, and the bundled model's
label. The crops are the model's 224 x 224 input: below about 75 px (``locator.min_cell_diameter_px``)
the cell reaches it enlarged from fewer pixels than nearly any it learnt from.

Usage: python benchmarks/magnification_crops.py [--model hv/bundled/hv_lite0_int8/model.tflite]
       [--zooms 1 0.5 0.4 0.33 0.25] [--out docs/figures/magnification_crops.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hv.classifier import load_classifier
from hv.config import load_config
from hv.field_images import classify_image
from hv.labels import OUTPUT_NAMES
from hv.locator import crop_cell
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent
FIELDS = REPO / "hv" / "bundled" / "fields"
SAMPLES = ("BloodImage_00001", "BloodImage_00009", "BloodImage_00015", "BloodImage_00021")  # one per class
TILE, CAPTION = 224, 38


def captioned(crop_rgb: np.ndarray, lines: list[str]) -> np.ndarray:
    """A crop with its caption drawn below it (BGR)."""
    tile = np.full((TILE + CAPTION, TILE, 3), 255, np.uint8)
    tile[:TILE] = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR)
    for row, text in enumerate(lines):
        cv2.putText(tile, text, (4, TILE + 15 + 17 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return tile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "hv" / "bundled" / "hv_lite0_int8" / "model.tflite"))
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--zooms", type=float, nargs="+", default=[1.0, 0.5, 0.4, 0.33, 0.25])
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "magnification_crops.jpg"))
    args = parser.parse_args()
    if not args.zooms or min(args.zooms) <= 0 or max(args.zooms) > 1:
        parser.error("--zooms: expected shrink factors in (0, 1]")
    config = load_config(args.config)
    classifier = load_classifier(args.model)
    rows = []
    for name in SAMPLES:
        field = read_image_rgb(str(FIELDS / f"{name}.jpg"))
        tiles = []
        for zoom in args.zooms:
            view = field if zoom == 1 else cv2.resize(field, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_AREA)
            cells = classify_image(classifier, view, config)
            boxes, probs, diameter = cells.boxes, cells.probs, cells.diameter_px
            if not len(boxes):
                tiles.append(captioned(np.full((TILE, TILE, 3), 200, np.uint8), [f"{zoom:g}x: no cell found"]))
                continue
            crop = crop_cell(view, boxes[0], config.locator, TILE, diameter)
            label = int(probs[0].argmax())
            caption = [f"{zoom:g}x: cell {diameter:.0f} px", f"{OUTPUT_NAMES[label]} {probs[0][label]:.0%}"]
            tiles.append(captioned(crop, caption))
        rows.append(np.hstack(tiles))
        print(name, "done", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
