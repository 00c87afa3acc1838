"""Which colour treatment of the crop lets one lab's features carry to another? A quick probe.

Training one recipe per candidate takes ~35 minutes a seed here, so candidates are first
compared by a cheaper stand-in: the frozen ImageNet Lite0 features of the crops (what the
recipe's phase 1 trains on), a softmax regression fitted on blood-cells/TRAIN crops (plain, and
with one stain-jittered copy each at the configured strength times each ``--jitter`` factor),
scored on pbc/TRAIN: the cross-lab *validation* set, never on a TEST set. What wins here is
then trained with the full recipe. ``--target-zoom`` is a diagnostic of the crop scale: the
other lab's crops cut tighter (or wider) than the measured scale says.

    python benchmarks/stain_probe.py --per-class 200 --jitter 1 2 --out out/stain_probe

``--grey-copies`` also tries random-greyscale augmentation: a grey copy of every training crop
added, the other lab's crops left in colour.

Writes ``probe.json`` (accuracy, macro-F1 and per-class recall per treatment) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import keras
import numpy as np

from hv.config import load_config, override
from hv.labels import CLASS_NAMES
from hv.model import build_backbone
from hv.preprocess import field_to_model_input, read_image_rgb
from training.augment import RandomStain
from training.data import discover

ROOT = Path(__file__).resolve().parents[1]

# The candidates, each from an (H, W, 3) uint8 RGB crop to one of the same shape. A white
# cell's crop always holds plasma around the cell (crop_context), and plasma is colourless in
# every lab: a cast on it is the camera's or the lamp's, and lies on the cell too.

# Share of the crop's brightest pixels taken as background (plasma). A crop at crop_context
# 1.4 is about 60 % cell and 40 % background and red cells; the brightest 10 % are plasma
# unless red cells cover all of it, and then they are the palest red-cell centres.
BACKGROUND_SHARE = 0.10
# The grey level the background is set to (a round bright level, not fitted).
BACKGROUND_LEVEL = 225.0


def none(crop_rgb: np.ndarray) -> np.ndarray:
    return crop_rgb


def _apply_gain(crop_rgb: np.ndarray, gain: np.ndarray) -> np.ndarray:
    return np.clip(crop_rgb.astype(np.float32) * gain, 0, 255).round().astype(np.uint8)


def background_colour(crop_rgb: np.ndarray, share: float = BACKGROUND_SHARE) -> np.ndarray:
    """Mean RGB of the brightest ``share`` of the pixels (by the sum of the channels)."""
    pixels = crop_rgb.reshape(-1, 3).astype(np.float32)
    brightness = pixels.sum(1)
    count = max(1, int(round(share * len(pixels))))
    brightest = np.argpartition(brightness, len(pixels) - count)[-count:]
    return pixels[brightest].mean(0)


def background(crop_rgb: np.ndarray) -> np.ndarray:
    """White balance and exposure from the background: its colour becomes ``BACKGROUND_LEVEL`` grey."""
    return _apply_gain(crop_rgb, BACKGROUND_LEVEL / np.maximum(background_colour(crop_rgb), 1.0))


def background_white(crop_rgb: np.ndarray) -> np.ndarray:
    """White balance only: the background becomes neutral, its brightness kept."""
    colour = np.maximum(background_colour(crop_rgb), 1.0)
    return _apply_gain(crop_rgb, colour.mean() / colour)


def grey_world(crop_rgb: np.ndarray) -> np.ndarray:
    """Each channel's mean made equal (the grey-world assumption), brightness kept."""
    means = np.maximum(crop_rgb.reshape(-1, 3).astype(np.float32).mean(0), 1.0)
    return _apply_gain(crop_rgb, means.mean() / means)


def stretch(crop_rgb: np.ndarray) -> np.ndarray:
    """Each channel's 1st-99th percentile stretched to 0-255: exposure and stain strength evened out."""
    pixels = crop_rgb.reshape(-1, 3).astype(np.float32)
    low, high = np.percentile(pixels, 1, axis=0), np.percentile(pixels, 99, axis=0)
    out = (crop_rgb.astype(np.float32) - low) * (255.0 / np.maximum(high - low, 1.0))
    return np.clip(out, 0, 255).round().astype(np.uint8)


def soften(crop_rgb: np.ndarray, side: int = 96) -> np.ndarray:
    """Detail above what the coarsest camera resolves removed: down to ``side`` pixels and back up."""
    height, width = crop_rgb.shape[:2]
    small = cv2.resize(crop_rgb, (side, side), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def desaturate(crop_rgb: np.ndarray, keep: float) -> np.ndarray:
    """Colour pulled towards grey, ``keep`` of it left."""
    grey_rgb = grey(crop_rgb).astype(np.float32)
    return np.clip(grey_rgb + keep * (crop_rgb.astype(np.float32) - grey_rgb), 0, 255).round().astype(np.uint8)


def grey(crop_rgb: np.ndarray) -> np.ndarray:
    """No colour at all: what shape and texture alone carry (a lower bound, not a candidate)."""
    return cv2.cvtColor(cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


COLOUR_NORMALISERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": none,
    "background": background,
    "background_white": background_white,
    "grey_world": grey_world,
    "stretch": stretch,
    "soften": soften,
    "background_soften": lambda crop: soften(background(crop)),
    "desaturate_0.3": lambda crop: desaturate(crop, 0.3),
    "desaturate_0.6": lambda crop: desaturate(crop, 0.6),
    "grey": grey,
}


def sample(root: str, per_class: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``per_class`` images of each of the four classes, drawn at random (seeded)."""
    split, _ = discover(root)
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for index in range(len(CLASS_NAMES)):
        members = [p for p, label in zip(split.paths, split.labels) if label == index]
        for path in rng.choice(members, min(per_class, len(members)), replace=False):
            paths.append(str(path))
            labels.append(index)
    return paths, np.array(labels)


def crops(paths: list[str], config) -> np.ndarray:
    return np.stack([field_to_model_input(read_image_rgb(p), config)[0] for p in paths])


def features(extractor: keras.Model, images: np.ndarray) -> np.ndarray:
    return extractor.predict(images.astype(np.float32), batch_size=64, verbose=0)


def fit_and_score(train_x, train_y, test_x, test_y, seed: int) -> dict:
    """Softmax regression on standardised features (L2, Adam, fixed epochs)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    keras.utils.set_random_seed(seed)
    head = keras.Sequential([keras.Input((train_x.shape[1],)),
                             keras.layers.Dense(len(CLASS_NAMES), activation="softmax",
                                                kernel_regularizer=keras.regularizers.l2(1e-3))])
    head.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    head.fit((train_x - mean) / std, train_y, epochs=60, batch_size=64, verbose=0)
    predicted = head.predict((test_x - mean) / std, verbose=0).argmax(1)
    recalls = [float((predicted[test_y == c] == c).mean()) for c in range(len(CLASS_NAMES))]
    f1s = []
    for c in range(len(CLASS_NAMES)):
        tp = float(((predicted == c) & (test_y == c)).sum())
        precision = tp / max(1, (predicted == c).sum())
        f1s.append(0.0 if tp == 0 else 2 * precision * recalls[c] / (precision + recalls[c]))
    return {"top1": float((predicted == test_y).mean()), "macro_f1": float(np.mean(f1s)),
            "recall": dict(zip(CLASS_NAMES, recalls))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=str(ROOT / "../shared/data/blood-cells/TRAIN"))
    parser.add_argument("--target", default=str(ROOT / "../shared/data/pbc/TRAIN"),
                        help="the other lab's TRAIN: validation, never a TEST set")
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--treatments", nargs="+", choices=sorted(COLOUR_NORMALISERS),
                        default=sorted(COLOUR_NORMALISERS))
    parser.add_argument("--jitter", type=float, nargs="+", default=[1.0, 2.0],
                        help="stain-jitter strengths tried, as factors of the config's augment.stain_*")
    parser.add_argument("--target-zoom", type=float, default=1.0,
                        help="diagnostic: crop the target lab's cells this much tighter (its crop_context / zoom)")
    parser.add_argument("--grey-copies", action="store_true",
                        help="also fit with a grey copy of every training crop added (random-greyscale augmentation; "
                             "the other lab's crops stay in colour)")
    parser.add_argument("--out", default=str(ROOT / "out/stain_probe"))
    args = parser.parse_args()
    if args.target_zoom <= 0 or args.per_class < 2:
        parser.error("--target-zoom must be above 0 and --per-class at least 2")

    config = load_config(ROOT / "config.toml")
    started = time.perf_counter()
    source_paths, source_y = sample(args.source, args.per_class, args.seed)
    target_paths, target_y = sample(args.target, args.per_class, args.seed)
    target_config = override(config, **{"locator.crop_context": config.locator.crop_context / args.target_zoom})
    source_crops, target_crops = crops(source_paths, config), crops(target_paths, target_config)
    print(f"{len(source_crops)} + {len(target_crops)} crops in {time.perf_counter() - started:.0f} s", flush=True)

    backbone = build_backbone(config.model)
    pooled = keras.layers.GlobalAveragePooling2D()(backbone.output)
    extractor = keras.Model(backbone.input, pooled)
    augment = config.augment
    jitters = {factor: RandomStain(augment.stain_scale * factor, augment.stain_shift * factor,
                                   augment.white_balance * factor, seed=args.seed) for factor in args.jitter}

    results: dict[str, dict] = {}
    for name in args.treatments:
        normalise = COLOUR_NORMALISERS[name]
        source_n = np.stack([normalise(c) for c in source_crops])
        target_n = np.stack([normalise(c) for c in target_crops])
        source_f, target_f = features(extractor, source_n), features(extractor, target_n)
        row = {"plain": fit_and_score(source_f, source_y, target_f, target_y, args.seed)}
        grey_f = features(extractor, np.stack([grey(normalise(c)) for c in source_crops])) if args.grey_copies else None
        if args.grey_copies:
            row["plain+grey_copies"] = fit_and_score(np.concatenate([source_f, grey_f]),
                                                     np.concatenate([source_y, source_y]), target_f, target_y,
                                                     args.seed)
        for factor, jitter in jitters.items():
            # One jittered copy of each crop: the raw crop jittered (as another lab's stain would be), then normalised.
            jittered = np.asarray(jitter(source_crops.astype(np.float32), training=True)).round().astype(np.uint8)
            jitter_f = features(extractor, np.stack([normalise(c) for c in jittered]))
            row[f"jitter_x{factor:g}"] = fit_and_score(np.concatenate([source_f, jitter_f]),
                                                       np.concatenate([source_y, source_y]), target_f, target_y,
                                                       args.seed)
            if args.grey_copies:
                row[f"jitter_x{factor:g}+grey_copies"] = fit_and_score(
                    np.concatenate([source_f, jitter_f, grey_f]), np.concatenate([source_y, source_y, source_y]),
                    target_f, target_y, args.seed)
        # Within the source lab, halves of the sample: copies of one field can fall on both sides, so
        # this reads high; it only shows whether a treatment throws away what tells the classes apart.
        row["same_lab_check"] = fit_and_score(source_f[::2], source_y[::2], source_f[1::2], source_y[1::2], args.seed)
        results[name] = row
        cells = ", ".join(f"{key} {value['top1']:.3f}" for key, value in row.items() if key != "same_lab_check")
        best = max((key for key in row if key != "same_lab_check"), key=lambda key: row[key]["top1"])
        print(f"{name:>18}: target {cells}; best's recall "
              f"{' / '.join(f'{v:.2f}' for v in row[best]['recall'].values())}; "
              f"same lab {row['same_lab_check']['top1']:.3f}  [{time.perf_counter() - started:.0f} s]", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps({"per_class": args.per_class, "target_zoom": args.target_zoom,
                                                "jitter": args.jitter, "seed": args.seed,
                                                "grey_copies": args.grey_copies,
                                                "source": args.source, "target": args.target,
                                                "results": results}, indent=2))


if __name__ == "__main__":
    main()
