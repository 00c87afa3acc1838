"""The bundled model under a microscope it has not seen, made from cells it has not seen: does adapting help?

A user's microscope differs from the two training labs in stain, lamp and camera. This
benchmark makes such "labs" by changing the appearance of PBC images (whole images, so the
locator meets the shift too) in four named ways, and scores the bundled Keras model on the
pbc/TRAIN images its own training held out for validation (``split_by_field`` with the
model's training seed and ``data.val_fraction``: 10 % of pbc/TRAIN, never trained on),
as trained and after adapting (``hv adapt``'s step, ``stem_bn`` and ``top_bn``) on
``--adapt-images`` other pbc/TRAIN images under the same shift (the training part: their
labels are not used, their content was trained on). No TEST set is read.

Shifts (colour deconvolution with the Ruifrok-Johnston haematoxylin / eosin / DAB vectors):
  brown_stain   haematoxylin redrawn brown-red, eosin yellow, a yellowish background
  warm_lamp     a dim halogen lamp: channel gains 1.0 / 0.85 / 0.62 and gamma 1.3
  faded_stain   both stains at 55 % of their density, a pale smear
  soft_camera   Gaussian blur of 1 % of the image width and JPEG at quality 50

``--source blood-cells/TRAIN --shifts none`` scores the other training lab's held-out fields
instead (grouped by original field, as training split them): what a recipe change costs there.

Writes ``synthetic_labs.json`` and ``shifts.jpg`` (one image under each shift) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier
from hv.config import load_config
from hv.labels import CLASS_NAMES
from hv.preprocess import field_to_model_input, read_image_rgb
from training.augment import RGB_FROM_HED  # the stain vectors training jitters along
from training.data import discover_sources, split_by_field
from training.lab_adaptation import DEFAULT_LAYERS, reestimate_statistics, whole_cell_crops
from training.metrics import classification_metrics

ROOT = Path(__file__).resolve().parent.parent
PBC_SOURCE = "pbc/TRAIN"  # training.data.source_name of the config's pbc/TRAIN folder



def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def restain(image_rgb: np.ndarray, stains: np.ndarray, density: float = 1.0) -> np.ndarray:
    """The image with its haematoxylin and eosin drawn with other colours (rows of ``stains``) and density."""
    optical = -np.log((image_rgb.astype(np.float64) + 1) / 256)
    amounts = optical @ np.linalg.inv(RGB_FROM_HED.astype(np.float64)) * density
    rgb = 256 * np.exp(-(amounts @ stains)) - 1
    return np.clip(rgb, 0, 255).astype(np.uint8)


def shift_image(image_rgb: np.ndarray, shift: str) -> np.ndarray:
    if shift == "none":
        return image_rgb
    if shift == "brown_stain":
        stains = np.stack([_unit([0.30, 0.62, 0.72]), _unit([0.08, 0.30, 0.95]), RGB_FROM_HED[2]])
        return np.clip(restain(image_rgb, stains) * np.array([1.0, 0.96, 0.80]), 0, 255).astype(np.uint8)
    if shift == "warm_lamp":
        scaled = (image_rgb / 255.0) ** 1.3 * np.array([1.0, 0.85, 0.62])
        return np.clip(scaled * 255, 0, 255).astype(np.uint8)
    if shift == "faded_stain":
        return restain(image_rgb, RGB_FROM_HED, density=0.55)
    if shift == "soft_camera":
        blurred = cv2.GaussianBlur(image_rgb, (0, 0), 0.01 * image_rgb.shape[1])
        ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(blurred, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 50])
        return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    raise ValueError(f"unknown shift {shift!r}")


SHIFTS = ("none", "brown_stain", "warm_lamp", "faded_stain", "soft_camera")


def shifts_picture(path: str, out: Path, tile_px: int = 240) -> None:
    """One image under each shift, side by side, each ``tile_px`` wide with its name."""
    image = read_image_rgb(path)
    tiles = []
    for shift in SHIFTS:
        tile = shift_image(image, shift)
        tile = cv2.resize(tile, (tile_px, round(tile_px * tile.shape[0] / tile.shape[1])), interpolation=cv2.INTER_AREA)
        tiles.append(cv2.putText(tile, shift, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA))
    cv2.imwrite(str(out), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=SHIFTS)
    parser.add_argument("--adapt-images", type=int, default=300)
    parser.add_argument("--source", default=PBC_SOURCE,
                        help="training source whose held-out images are shifted and scored (training.data.source_name)")
    parser.add_argument("--out", default=str(ROOT / "out" / "synthetic_labs"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    # The training seed decides which images the training held out: read it from the config saved
    # beside the model (models/<name>.config.json, or a run folder's config.json).
    saved = [p for p in (Path(args.model).with_suffix(".config.json"), Path(args.model).parent / "config.json")
             if p.is_file()]
    if not saved:
        raise SystemExit(f"{args.model}: no saved config beside it to read its training seed from")
    seed = json.loads(saved[0].read_text())["train"]["seed"]
    data, _ = discover_sources(config.data.train_dirs)
    trained_on, held_out = split_by_field(data, config.data.val_fraction, seed)
    score = [(p, y) for p, y, s in zip(held_out.paths, held_out.labels, held_out.source_of()) if s == args.source]
    if not score:
        raise SystemExit(f"--source {args.source}: no held-out image of that source; sources: "
                         f"{sorted(set(held_out.source_of()))}")
    pool = [p for p, s in zip(trained_on.paths, trained_on.source_of()) if s == args.source]
    adapt_paths = [pool[i] for i in np.random.default_rng(0).permutation(len(pool))[: args.adapt_images]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shifts_picture(score[0][0], out / "shifts.jpg")
    print(f"scoring {len(score)} held-out {args.source} images (seed {seed}); adapting on {len(adapt_paths)} others",
          flush=True)

    started = time.perf_counter()
    labels = np.array([y for _, y in score])
    report = {"model": Path(args.model).name, "seed": seed, "source": args.source, "scored": len(score),
              "adapt_images": len(adapt_paths), "layers": list(DEFAULT_LAYERS), "shifts": {}}
    for shift in args.shifts:
        inputs = [field_to_model_input(shift_image(read_image_rgb(p), shift), config) for p, _ in score]
        crops, located = np.stack([c for c, _ in inputs]), np.array([f for _, f in inputs])
        adapt_crops = [c for p in adapt_paths for c in whole_cell_crops(shift_image(read_image_rgb(p), shift), config)]
        row = {"located_share": round(float(located.mean()), 4), "adapt_cells": len(adapt_crops), "adapted": None}
        # Without a located whole cell there is nothing to adapt on (hv adapt refuses, as the page does).
        for name in ("as_trained", "adapted") if adapt_crops else ("as_trained",):
            classifier = KerasClassifier(args.model)  # a fresh copy each time
            if name == "adapted":
                reestimate_statistics(classifier.model, np.stack(adapt_crops), DEFAULT_LAYERS)
            predicted = classifier.predict(crops).argmax(1)  # "other" is a wrong answer for these cells
            metrics = classification_metrics(labels, predicted)
            row[name] = {"top1": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
                         "flagged_other": round(float((predicted == len(CLASS_NAMES)).mean()), 4),
                         "recall": {n: round(metrics["per_class"][n]["recall"], 3) for n in CLASS_NAMES}}
        report["shifts"][shift] = row
        adapted = f"{row['adapted']['top1']:.1%}" if row["adapted"] else "-"
        print(f"{shift:>12}: located {row['located_share']:.1%}, as trained {row['as_trained']['top1']:.1%}, adapted "
              f"{adapted} ({len(adapt_crops)} cells)  [{time.perf_counter() - started:.0f} s]", flush=True)
        (out / "synthetic_labs.json").write_text(json.dumps(report, indent=2) + "\n")  # kept if stopped early


if __name__ == "__main__":
    main()
