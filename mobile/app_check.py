"""Run a packaged model the way an app would, and check it agrees with ``hv``'s classifier.

Only the package folder is read: ``model.json`` for the input and output contract,
``labels.txt`` for the names. Pixels go in raw; outputs are dequantised by hand with the
published scale and zero point, as the Kotlin and Swift snippets in mobile/README.md do.

Usage: python -m mobile.app_check PACKAGE_DIR IMAGE [IMAGE ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hv.classifier import LiteRTClassifier
from hv.config import LocatorConfig
from hv.locator import cell_diameter_px, crop_cell, locate_cells
from hv.preprocess import read_image_rgb
from mobile.package import check_package


def app_predict(package: Path, crops_rgb: np.ndarray) -> list[tuple[str, float]]:
    """(label, probability) per crop, using nothing but the package's own files."""
    spec = json.loads((package / "model.json").read_text())
    labels = (package / "labels.txt").read_text().split()
    interpreter = Interpreter(model_path=str(package / "model.tflite"))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    dtype = np.dtype(spec["input"]["dtype"])
    results = []
    for crop in crops_rgb:
        interpreter.set_tensor(input_index, crop[None].astype(dtype))  # raw pixels, as the contract says
        interpreter.invoke()
        raw = interpreter.get_tensor(output_index)[0]
        quant = spec["output"]["quantization"]
        probs = (raw.astype(np.float32) - quant["zero_point"]) * quant["scale"] if quant else raw.astype(np.float32)
        results.append((labels[int(probs.argmax())], float(probs.max())))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args(argv)
    package = Path(args.package)
    spec = check_package(package)
    crop_keys = ("cell_diameter_frac", "red_cell_ratio", "fallback_diameter_frac", "crop_context", "edge_fill",
                 "stain_correction")
    locator = LocatorConfig(**{k: v for k, v in spec["crop"].items() if k in crop_keys})
    size = spec["input"]["shape"][1]
    ours = LiteRTClassifier(package / "model.tflite")
    disagreements = 0
    for path in args.images:
        image = read_image_rgb(path)
        diameter = cell_diameter_px(image, locator)
        boxes = locate_cells(image, locator, diameter)
        crops = np.stack([crop_cell(image, b, locator, size, diameter) for b in boxes]) if len(boxes) else None
        if crops is None:
            print(f"{path}: no white cell found")
            continue
        hv_labels = [spec["class_names"][i] for i in ours.predict(crops).argmax(1)]
        for (label, prob), expected in zip(app_predict(package, crops), hv_labels):
            mark = "" if label == expected else f"   <-- hv says {expected}"
            disagreements += label != expected
            print(f"{Path(path).name}: {label} ({prob:.0%}){mark}")
    print("app and hv agree" if not disagreements else f"{disagreements} disagreements")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
