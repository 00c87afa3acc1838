"""The bundled model under a microscope it has not seen, made from cells it has not seen: does adapting help?

A user's microscope differs from the two training labs in stain, lamp and camera. This
benchmark makes such "labs" by changing the appearance of PBC images (whole images, so the
locator meets the shift too) in four named ways, and scores the bundled Keras model on the
pbc/TRAIN images its own training held out for validation (``training.heldout``: the
split rebuilt from the config saved beside the model, 10 % of pbc/TRAIN, never trained on),
as trained and after adapting (``hv adapt``'s step, ``stem_bn`` and ``top_bn``) on
``--adapt-images`` other pbc/TRAIN images under the same shift (the training part: their
labels are not used, their content was trained on). No TEST set is read.

Shifts (colour deconvolution with the Ruifrok-Johnston haematoxylin / eosin / DAB vectors):
  brown_stain   haematoxylin redrawn brown-red, eosin yellow, a yellowish background
  warm_lamp     a dim halogen lamp: channel gains 1.0 / 0.85 / 0.62 and gamma 1.3
  faded_stain   both stains at 55 % of their density, a pale smear
  soft_camera   Gaussian blur of 1 % of the image width and JPEG at quality 50
  zoom_out      a lower magnification: the image at 0.6 of its size (cells 0.6 as wide in pixels)
  zoom_in       a higher magnification: the centre 2/3 of the image enlarged 1.5 times
The zooms check the locator's per-image scale estimate (``cell_diameter_frac = "auto"``): with
it, a camera at another magnification should give the classifier the same crop.

``--source blood-cells/TRAIN --shifts none`` scores the other training lab's held-out fields
instead: what a recipe change costs there. Held-out images whose original field (by the
shipped grouping, ``training/originals/blood-cells.csv``) has copies on the training side
are not scored: a model trained with file-name ids as groups saw them.

``--self-train N ...`` also retrains the adapted model's head on its own N surest calls of each
class among the adapting cells (``training.self_training``), with no label.

``--labelled-per-class N ...`` then also retrains the adapted model's head on N labelled cells of
each class (``training.lab_tuning``), shifted, from the images the training used (what a
technician's corrections teach it), and every row also reads the share of the held-out
pbc/OTHER cells (none of the four) under the shift that the model still flags: what tuning
on four-class labels costs the "other" output.

Writes ``synthetic_labs.json`` and ``shifts.jpg`` (one image under each shift) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np
from lab_adaptation import (  # benchmarks/ is on sys.path when run as a script
    add_tuning_arguments,
    head_weights,
    labelled_subset,
    restore_head_weights,
    score_calls,
    tuning_learnt_other,
    with_class_mix,
)

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier
from hv.config import load_config
from hv.labels import OTHER_ID
from hv.preprocess import field_to_model_input, read_image_rgb
from training.augment import RGB_FROM_HED  # the stain vectors training jitters along
from training.data import field_group, load_originals, original_key
from training.heldout import model_split, saved_config
from training.lab_adaptation import (
    DEFAULT_LAYERS,
    class_balancing_weights,
    feature_shift,
    reestimate_statistics,
    whole_cell_crops,
)
from training.lab_tuning import tune_on_labelled
from training.metrics import accuracy_interval
from training.self_training import tune_on_own_calls
from training.trained_crop import with_trained_crop

ROOT = Path(__file__).resolve().parent.parent
PBC_SOURCE = "pbc/TRAIN"  # training.data.source_name of the config's pbc/TRAIN folder



def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


def restain(image_rgb: np.ndarray, stains: np.ndarray, density: float = 1.0) -> np.ndarray:
    """The image with its haematoxylin and eosin drawn with other colours (rows of ``stains``) and density.

    Near-black pixels (blood-cells/'s rotated corners) hold no stain and stay as they are: redrawn,
    their extreme density came out as dark coloured areas the locator took for the densest nuclei.
    """
    optical = -np.log((image_rgb.astype(np.float64) + 1) / 256)
    amounts = optical @ np.linalg.inv(RGB_FROM_HED.astype(np.float64)) * density
    rgb = np.clip(256 * np.exp(-(amounts @ stains)) - 1, 0, 255).astype(np.uint8)
    dark = image_rgb.max(axis=2) <= 25
    rgb[dark] = image_rgb[dark]
    return rgb


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
    height, width = image_rgb.shape[:2]
    if shift == "zoom_out":
        return cv2.resize(image_rgb, (round(width * 0.6), round(height * 0.6)), interpolation=cv2.INTER_AREA)
    if shift == "zoom_in":
        top, left = height // 6, width // 6
        centre = image_rgb[top : height - top, left : width - left]
        return cv2.resize(centre, (round(centre.shape[1] * 1.5), round(centre.shape[0] * 1.5)),
                          interpolation=cv2.INTER_CUBIC)
    raise ValueError(f"unknown shift {shift!r}")


SHIFTS = ("none", "brown_stain", "warm_lamp", "faded_stain", "soft_camera", "zoom_out", "zoom_in")


def shifts_picture(path: str, out: Path, tile_px: int = 240) -> None:
    """One image under each shift, side by side with its name, all at one pixel scale (a zoom shows as a size)."""
    image = read_image_rgb(path)
    scale = tile_px / image.shape[1]
    tile_h = round(image.shape[0] * scale)
    tiles = []
    for shift in SHIFTS:
        shifted = shift_image(image, shift)
        shifted = cv2.resize(shifted, (min(tile_px, round(shifted.shape[1] * scale)),
                                       min(tile_h, round(shifted.shape[0] * scale))), interpolation=cv2.INTER_AREA)
        tile = np.full((tile_h, tile_px, 3), 255, np.uint8)
        tile[: shifted.shape[0], : shifted.shape[1]] = shifted
        tiles.append(cv2.putText(tile, shift, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA))
    cv2.imwrite(str(out), cv2.cvtColor(np.hstack(tiles), cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def scored(classifier: KerasClassifier, crops: np.ndarray, labels: np.ndarray, other_crops: np.ndarray | None,
           groups: list[str]) -> dict:
    """``lab_adaptation.score_calls``, rounded; top-1's 95 % interval by original (``groups``: each scored
    image's); each image right or not (``right``, in the order of the report's ``scored_images``, for paired
    comparisons); and the share of the other cells (``other_crops``) flagged."""
    called = classifier.predict(crops).argmax(1)
    row = score_calls(called, labels)
    interval, how = accuracy_interval(groups, labels, called)
    return {"top1": round(row["top1"], 4), "top1_95": [round(v, 4) for v in interval], "interval": how,
            "macro_f1": round(row["macro_f1"], 4),
            "flagged_other": row["flagged_other"],
            "recall": {n: round(v, 3) for n, v in row["recall"].items()},
            "right": (called == labels).astype(int).tolist(),
            "other_flagged": None if other_crops is None else
            round(float((classifier.predict(other_crops).argmax(1) == OTHER_ID).mean()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--shifts", nargs="+", default=list(SHIFTS), choices=SHIFTS)
    parser.add_argument("--adapt-images", type=int, default=300)
    parser.add_argument("--balanced", action="store_true",
                        help="adapt with each class the unadapted model calls the cells weighing alike")
    parser.add_argument("--adapt-mix", default="",
                        help="draw the adapting images with this class mix, e.g. neutrophil=0.6,lymphocyte=0.3,"
                             "monocyte=0.06,eosinophil=0.04 (a differential's), not at random")
    parser.add_argument("--source", default=PBC_SOURCE,
                        help="training source whose held-out images are shifted and scored (training.data.source_name)")
    add_tuning_arguments(parser)
    parser.add_argument("--draw", type=int, default=0,
                        help="which random draw of the adapting and labelled images from the training pool (the "
                             "scored images are the model's held-out ones whatever the draw)")
    parser.add_argument("--check-only", action="store_true",
                        help="measure the check before adapting (the feature shifts) and the model as trained; "
                             "neither adapt nor tune")
    parser.add_argument("--config", default=str(ROOT / "config.toml"),
                        help="the data and locator settings; the crop settings the model was trained with "
                             "(training.trained_crop: stain correction, context, edge fill) replace its own")
    parser.add_argument("--out", default=str(ROOT / "out" / "synthetic_labs"))
    args = parser.parse_args()

    config = with_trained_crop(load_config(args.config), args.model)
    # The images the model's training held out, from the seed and grouping saved beside it.
    if saved_config(args.model) is None:
        raise SystemExit(f"{args.model}: no saved config beside it to read its training seed from")
    split = model_split(args.model, config)
    trained_on, seed = split.trained_on, split.seed
    score = [(p, y) for p, y, s in zip(split.held_out.paths, split.held_out.labels, split.held_out.source_of())
             if s == args.source]
    leaked = split.leaked.source_of().count(args.source)
    if not score and leaked:
        raise SystemExit(f"--source {args.source}: all {leaked} images the training held out are copies of originals "
                         "it trained on (it split by file-name ids); only a model trained with "
                         "data.original_groups can be validated on this source")
    if not score:
        raise SystemExit(f"--source {args.source}: no held-out image of that source; sources: "
                         f"{sorted(set(split.held_out.source_of()))}")
    pool = [(p, y) for p, y, s in zip(trained_on.paths, trained_on.labels, trained_on.source_of()) if s == args.source]
    order = np.random.default_rng(2 * args.draw).permutation(len(pool))
    if args.adapt_mix:
        order = with_class_mix(order, np.array([y for _, y in pool]), args.adapt_mix, args.adapt_images)
    adapt_paths = [pool[i][0] for i in order[: args.adapt_images]]
    pool_labels = np.array([y for _, y in pool])
    labelled = {n: labelled_subset(np.random.default_rng(2 * args.draw + 1).permutation(len(pool)), pool_labels,
                                   [p for p, _ in pool], n) for n in args.labelled_per_class if n}
    others = [p for p, y, s in zip(split.held_out.paths, split.held_out.labels, split.held_out.source_of())
              if s.startswith("pbc/OTHER")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shifts_picture(score[0][0], out / "shifts.jpg")
    print(f"scoring {len(score)} held-out {args.source} images (seed {seed}; {leaked} more held out are copies of "
          f"trained originals, not scored); adapting on {len(adapt_paths)} others", flush=True)

    started = time.perf_counter()
    labels = np.array([y for _, y in score])
    # Each scored image's original field: copies of one original are not independent cells.
    originals = load_originals(config.data.original_groups)
    groups = [field_group(p, y, args.source, originals) for p, y in score]
    report = {"model": Path(args.model).name, "seed": seed, "draw": args.draw, "source": args.source,
              "scored": len(score),
              "not_scored_copies_of_trained_originals": leaked,
              "adapt_images": len(adapt_paths), "adapt_mix": args.adapt_mix, "balanced": args.balanced,
              "layers": list(DEFAULT_LAYERS), "other_scored": len(others),
              "scored_images": [original_key(p) for p, _ in score], "scored_groups": groups,
              "shifts": {}}
    for shift in args.shifts:
        inputs = [field_to_model_input(shift_image(read_image_rgb(p), shift), config) for p, _ in score]
        crops, located = np.stack([c for c, _ in inputs]), np.array([f for _, f in inputs])
        other_crops = np.stack([field_to_model_input(shift_image(read_image_rgb(p), shift), config)[0]
                                for p in others]) if others else None
        labelled_crops = {n: np.stack([field_to_model_input(shift_image(read_image_rgb(pool[i][0]), shift), config)[0]
                                       for i in chosen]) for n, chosen in labelled.items()}
        adapt_crops = [c for p in adapt_paths for c in whole_cell_crops(shift_image(read_image_rgb(p), shift), config)]
        row = {"located_share": round(float(located.mean()), 4), "adapt_cells": len(adapt_crops), "adapted": None}
        # Without a located whole cell there is nothing to adapt on (hv adapt refuses, as the page does).
        for name in ("as_trained", "adapted") if adapt_crops and not args.check_only else ("as_trained",):
            classifier = KerasClassifier(args.model)  # a fresh copy each time
            if name == "adapted":
                weights = class_balancing_weights(classifier.model, np.stack(adapt_crops)) if args.balanced else None
                reestimate_statistics(classifier.model, np.stack(adapt_crops), DEFAULT_LAYERS, weights=weights)
            if name == "as_trained" and adapt_crops:  # how far the adapting cells lie from the stored statistics
                for key, balanced in (("feature_shift", False), ("feature_shift_balanced", True)):
                    row[key] = {layer: round(value, 4) for layer, value in
                                feature_shift(classifier.model, np.stack(adapt_crops), balanced=balanced).items()}
                # The scored cells were never trained on: does the shift read higher on unseen cells?
                row["feature_shift_balanced_scored"] = {
                    layer: round(value, 4) for layer, value in
                    feature_shift(classifier.model, crops[located], balanced=True).items()}
            row[name] = scored(classifier, crops, labels, other_crops, groups)
            if name != "adapted":
                continue
            adapted_head = head_weights(classifier.model)
            for per_class in args.self_train:  # the head retrained on the adapted model's surest calls, no label
                restore_head_weights(classifier.model, adapted_head)
                own = tune_on_own_calls(classifier.model, np.stack(adapt_crops), per_class=per_class,
                                        learnt_other=tuning_learnt_other(args.model, args.other_step))
                key = f"adapted + self-trained, {per_class}/class"
                row[key] = scored(classifier, crops, labels, other_crops, groups) | {"taken": own.taken}
                print(f"{shift:>12}: {key}: {row[key]['top1']:.1%}, other flagged {row[key]['other_flagged']}",
                      flush=True)
            for per_class, chosen in labelled.items():
                for strength, head in ((s, h) for s in args.tuning_strength for h in args.tuning_head):
                    restore_head_weights(classifier.model, adapted_head)
                    tuning = tune_on_labelled(classifier.model, labelled_crops[per_class], pool_labels[chosen],
                                              strength=strength, train_dense=head == "dense+pred",
                                              anchor_crops=np.stack(adapt_crops),
                                              learnt_other=tuning_learnt_other(args.model, args.other_step))
                    key = f"adapted + {per_class}/class labelled, {head}, pull {strength:g}"
                    row[key] = scored(classifier, crops, labels, other_crops, groups) | {"labelled": tuning.per_class}
                    print(f"{shift:>12}: {key}: {row[key]['top1']:.1%}, other flagged {row[key]['other_flagged']}",
                          flush=True)
        report["shifts"][shift] = row
        adapted = f"{row['adapted']['top1']:.1%}" if row["adapted"] else "-"
        print(f"{shift:>12}: located {row['located_share']:.1%}, as trained {row['as_trained']['top1']:.1%}, adapted "
              f"{adapted} ({len(adapt_crops)} cells)  [{time.perf_counter() - started:.0f} s]", flush=True)
        (out / "synthetic_labs.json").write_text(json.dumps(report, indent=2) + "\n")  # kept if stopped early


if __name__ == "__main__":
    main()
