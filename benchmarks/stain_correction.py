"""What the stain correction (``locator.stain_correction``) changes: each model's calls with it off and on.

``hv.stain`` turns a crop whose red cells are not eosin-pink to the training labs' colours
before classifying, and gives a crop lit by a lamp of another colour their plasma. This scores
models both ways on the same images, under the synthetic labs of ``benchmarks/synthetic_labs.py``
(a brown-red stain, a warm lamp, a faded stain, a soft camera), as trained (no adapting):

- by default the images each model's training held out of ``--source`` (rebuilt from the
  config saved beside it, as ``synthetic_labs.py`` does), with the held-out pbc/OTHER cells
  for the share flagged "other";
- with ``--folder F`` instead, ``--images`` random images of class folder F, for models that
  never trained on it (a blood-cells-only model on pbc/TRAIN).

``--settings auto always`` compares other settings of ``locator.stain_correction`` instead ("always":
every crop turned to the training labs' colours, the trial of BENCHMARKS.md "Every crop in one colour").

For each model and shift: top-1 under the two settings (off and auto unless ``--settings``) with their
95 % intervals (by original where images are copies of one), the paired difference, the share of
crops the second setting changed (the rest are the same pixels, so the same calls). No TEST set is
read. ``--picture`` writes a few crops under the brown-red stain, as they are and corrected, beside the
unshifted one.

Writes ``stain_correction.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import cv2
import numpy as np
from synthetic_labs import PBC_SOURCE, scored, shift_image  # benchmarks/ is on sys.path when run as a script

from hv.classifier import KerasClassifier
from hv.config import Config, load_config, override
from hv.labels import CLASS_NAMES
from hv.preprocess import IMAGE_SUFFIXES, field_to_model_input, read_image_rgb
from training.data import field_group, load_originals
from training.heldout import model_split

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("off", "auto", "always")  # locator.stain_correction


def with_correction(config: Config, setting: str) -> Config:
    return override(config, **{"locator.stain_correction": setting})


def held_out_images(model: str, config: Config, source: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(path, label) of the images the model's training held out of ``source``, and its held-out pbc/OTHER paths."""
    split = model_split(model, config)
    rows = list(zip(split.held_out.paths, split.held_out.labels, split.held_out.source_of()))
    score = [(p, y) for p, y, s in rows if s == source]
    if not score:
        raise SystemExit(f"{model}: no held-out image of {source}; sources: {sorted({s for _, _, s in rows})}")
    return score, [p for p, _, s in rows if s.startswith("pbc/OTHER")]


def folder_images(folder: Path, count: int) -> list[tuple[str, int]]:
    """``count`` random (path, label) of a folder of the four class folders."""
    # Class folders in any case, as training reads them (blood-cells/ has EOSINOPHIL, ...).
    rows = [(str(p), CLASS_NAMES.index(p.parent.name.lower())) for p in sorted(folder.glob("*/*"))
            if p.parent.name.lower() in CLASS_NAMES and p.suffix.lower() in IMAGE_SUFFIXES]
    if not rows:
        raise SystemExit(f"--folder {folder}: no image in a folder named {', '.join(CLASS_NAMES)}")
    return random.Random(0).sample(rows, min(count, len(rows)))


def crops_of(paths: list[str], shift: str, config: Config) -> np.ndarray:
    return np.stack([field_to_model_input(shift_image(read_image_rgb(p), shift), config)[0] for p in paths])


def picture(paths: list[str], config: Config, out: Path, tile_px: int = 160) -> None:
    """Rows of crops: unshifted, under the brown-red stain, and that corrected; each labelled."""
    rows = []
    for path in paths:
        image = read_image_rgb(path)
        tiles = [field_to_model_input(image, with_correction(config, "off"))[0],
                 field_to_model_input(shift_image(image, "brown_stain"), with_correction(config, "off"))[0],
                 field_to_model_input(shift_image(image, "brown_stain"), with_correction(config, "auto"))[0]]
        rows.append(np.hstack([cv2.resize(t, (tile_px, tile_px), interpolation=cv2.INTER_AREA) for t in tiles]))
    grid = np.vstack(rows)
    for column, name in enumerate(("as stained", "brown-red stain", "corrected")):
        cv2.putText(grid, name, (column * tile_px + 5, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--source", default=PBC_SOURCE,
                        help="training source whose held-out images are scored (training.data.source_name)")
    parser.add_argument("--folder", default="", help="score random images of this class folder instead")
    parser.add_argument("--images", type=int, default=500, help="with --folder: how many")
    parser.add_argument("--shifts", nargs="+", default=["none", "brown_stain", "warm_lamp", "faded_stain",
                                                        "soft_camera"])
    parser.add_argument("--settings", nargs=2, default=["off", "auto"], choices=SETTINGS, metavar="SETTING",
                        help="the two locator.stain_correction settings compared (off auto; auto always: a "
                             "model's calls with every crop turned to the training labs' colours)")
    parser.add_argument("--picture", type=int, default=0, help="write this many crops' rows to stain_correction.jpg")
    parser.add_argument("--out", default=str(ROOT / "out" / "stain_correction"))
    args = parser.parse_args()
    config = load_config(ROOT / "config.toml")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    originals = load_originals(config.data.original_groups)
    report = {"source": args.folder or args.source, "models": {}}
    for model in args.models:
        if args.folder:
            score, others = folder_images(Path(args.folder), args.images), []
        else:
            score, others = held_out_images(model, config, args.source)
        if args.picture and model == args.models[0]:
            picture([p for p, _ in random.Random(1).sample(score, min(args.picture, len(score)))], config,
                    out / "stain_correction.jpg")
        labels = np.array([y for _, y in score])
        groups = [field_group(p, y, args.source, originals) for p, y in score]
        classifier = KerasClassifier(model)
        rows = {}
        first, second = args.settings
        for shift in args.shifts:
            crops = {s: crops_of([p for p, _ in score], shift, with_correction(config, s)) for s in args.settings}
            other_crops = {s: crops_of(others, shift, with_correction(config, s)) if others else None
                           for s in args.settings}
            row = {s: scored(classifier, crops[s], labels, other_crops[s], groups) for s in args.settings}
            changed = float(np.mean([not np.array_equal(a, b) for a, b in zip(crops[first], crops[second])]))
            row["crops_corrected"] = round(changed, 4)
            row["difference"] = round(row[second]["top1"] - row[first]["top1"], 4)
            rows[shift] = row
            print(f"{Path(model).parent.name} {shift}: {len(score)} images, {100 * changed:.1f} % changed; "
                  f"top-1 {first} {100 * row[first]['top1']:.2f} % -> {second} {100 * row[second]['top1']:.2f} % "
                  f"({100 * row['difference']:+.2f}); other flagged {row[first]['other_flagged']} -> "
                  f"{row[second]['other_flagged']}", flush=True)
        report["models"][model] = {"scored": len(score), "other_scored": len(others), "settings": args.settings,
                                   "shifts": rows}
        (out / "stain_correction.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
