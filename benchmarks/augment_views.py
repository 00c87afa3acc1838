"""What the stain augmentation does to a crop, as a picture: each image's crop, then a few draws.

One row per image: the crop the model is trained on (``hv.preprocess.field_view``), then
``--draws`` outputs of ``training.augment.RandomStain`` with the stain settings of ``--config``
(its ``augment.stain_*``, ``augment.white_balance`` and ``augment.nucleus_hue``), or with only
the settings given on the command line. Geometry and the other jitters are left out so that
the colour change is what one sees. The defaults are one eosinophil and one neutrophil of
blood-cells/TRAIN and one eosinophil of pbc/TRAIN (PBC: Acevedo et al. 2020, CC BY 4.0).

    python benchmarks/augment_views.py --config benchmarks/configs/two_labs_nucleus_hue.toml \\
        --only-nucleus-hue --out docs/figures/nucleus_hue_views.jpg

Usage: python benchmarks/augment_views.py [--config config.toml] [--images IMG ...] [--draws 5]
       [--only-nucleus-hue] [--tile 128] [--out out/augment_views.jpg]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hv.config import load_config
from hv.preprocess import field_view, read_image_rgb
from training.augment import RandomStain

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_IMAGES = [
    DATA / "blood-cells" / "TRAIN" / "EOSINOPHIL",
    DATA / "blood-cells" / "TRAIN" / "NEUTROPHIL",
    DATA / "pbc" / "TRAIN" / "eosinophil",
]


def first_image(path: Path) -> Path:
    """``path`` itself, or the first image (by name) of a class folder."""
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if not images:
            raise SystemExit(f"{path}: no .jpg, .jpeg or .png image in it")
        return images[0]
    if not path.exists():
        raise SystemExit(f"{path}: no such image or folder")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config.toml"))
    parser.add_argument("--images", nargs="+", default=[str(p) for p in DEFAULT_IMAGES],
                        help="images, or class folders (their first image)")
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--only-nucleus-hue", action="store_true",
                        help="the nucleus hue turn alone (stain amounts and white balance kept)")
    parser.add_argument("--tile", type=int, default=128, help="side of each crop in the picture, pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out" / "augment_views.jpg"))
    args = parser.parse_args()

    config = load_config(args.config)
    augment = config.augment
    if args.only_nucleus_hue:
        if not augment.nucleus_hue:
            raise SystemExit(f"{args.config}: augment.nucleus_hue is 0, so --only-nucleus-hue would "
                             "draw the crop unchanged; give a config that sets it, e.g. "
                             "benchmarks/configs/two_labs_nucleus_hue.toml")
        layer = RandomStain(0.0, 0.0, 0.0, augment.nucleus_hue, seed=args.seed)
    else:
        layer = RandomStain(augment.stain_scale, augment.stain_shift, augment.white_balance, augment.nucleus_hue,
                            seed=args.seed)
    rows = []
    for image in args.images:
        path = first_image(Path(image))
        crop, _ = field_view(read_image_rgb(str(path)), config)
        crop = cv2.resize(crop, (args.tile, args.tile), interpolation=cv2.INTER_AREA).astype(np.float32)
        draws = np.asarray(layer(np.repeat(crop[None], args.draws, axis=0), training=True))
        rows.append(np.hstack([crop, *draws]))
        print(f"{path}: {args.draws} draws")
    picture = np.clip(np.vstack(rows), 0, 255).astype(np.uint8)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {out}: first column the crop, then {args.draws} draws")


if __name__ == "__main__":
    main()
