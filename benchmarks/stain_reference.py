"""The training labs' stain anchors (``hv.stain``'s reference), and which training crops the correction touches.

``hv.stain`` turns a crop whose red cells are not eosin-pink so that its red cells' colour
(a direction of optical density) points where the training labs' red cells point, and puts
the training labs' plasma density back. This measures both: for each training folder, the
crops of ``--images`` random images (the crop training uses, ``field_to_model_input``), each
crop's anchors (``hv.stain.stain_anchors``), their per-lab medians, and the mean of the labs'
medians (the direction normalised): the constants to write into ``hv/stain.py``.

With ``--gate-all`` it also reads the gate (``hv.stain.corrected_stain``) on *every* image of
each folder, cut with the correction off: its count of crops the correction would change is how
many training (or scoring) crops it changes. Folders are read only; TEST folders can be named for
that count, whose labels are not read.

Writes ``stain_reference.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hv.config import load_config, override
from hv.preprocess import IMAGE_SUFFIXES, field_to_model_input, read_image_rgb
from hv.stain import corrected_stain, green_over_blue, stain_anchors

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def image_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)


def gate(crop_rgb: np.ndarray) -> tuple[float, float, bool]:
    """A crop's green / blue absorption, its plasma's blue-minus-red density, and whether the correction leaves it."""
    anchors = stain_anchors(crop_rgb)
    blue_minus_red = float(anchors[1][2] - anchors[1][0]) if anchors is not None else float("nan")
    return green_over_blue(crop_rgb), blue_minus_red, corrected_stain(crop_rgb) is crop_rgb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+",
                        default=[str(DATA / "blood-cells" / "TRAIN"), str(DATA / "pbc" / "TRAIN")],
                        help="class folders, one per training lab (the reference is the mean of their medians)")
    parser.add_argument("--images", type=int, default=400, help="random images per folder for the anchors")
    parser.add_argument("--gate-all", nargs="*", default=None,
                        help="read the gate on every image of these folders (none named: --folders)")
    parser.add_argument("--out", default=str(ROOT / "out" / "stain_reference"))
    args = parser.parse_args()
    config = load_config(ROOT / "config.toml")

    uncorrected = override(config, **{"locator.stain_correction": "off"})

    def crop(path: Path) -> np.ndarray:
        """The crop training cuts, before any stain correction."""
        return field_to_model_input(read_image_rgb(str(path)), uncorrected)[0]

    report = {"folders": {}, "images": args.images}
    reds, plasmas = [], []
    with ThreadPoolExecutor(4) as pool:
        for folder in map(Path, args.folders):
            paths = image_paths(folder)
            if len(paths) < args.images:
                raise SystemExit(f"--folders {folder}: {len(paths)} images in its class folders, --images asks "
                                 f"{args.images}")
            paths = random.Random(0).sample(paths, args.images)
            anchors = [a for a in pool.map(lambda p: stain_anchors(crop(p)), paths) if a is not None]
            red = np.median([a[0] for a in anchors], axis=0)
            plasma = np.median([a[1] for a in anchors], axis=0)
            reds.append(red / np.linalg.norm(red))
            plasmas.append(plasma)
            report["folders"][str(folder)] = {"crops": len(anchors), "red_od_median": np.round(red, 4).tolist(),
                                              "plasma_od_median": np.round(plasma, 4).tolist()}
            print(f"{folder}: {len(anchors)} crops, red-cell direction {np.round(red, 3)}, "
                  f"plasma {np.round(plasma, 3)}", flush=True)
        reference = np.mean(reds, axis=0)
        report["reference_red_od"] = np.round(reference / np.linalg.norm(reference), 3).tolist()
        report["reference_plasma_od"] = np.round(np.mean(plasmas, axis=0), 3).tolist()
        print(f"reference: red {report['reference_red_od']}, plasma {report['reference_plasma_od']}", flush=True)

        gate_folders = args.folders if args.gate_all == [] else (args.gate_all or [])
        report["gate"] = {}
        for folder in map(Path, gate_folders):
            paths = image_paths(folder)
            if not paths:
                raise SystemExit(f"--gate-all {folder}: no image in its class folders")
            read = list(pool.map(lambda p: gate(crop(p)), paths))
            ratios, lamps = np.array([r[0] for r in read]), np.array([r[1] for r in read])
            corrected = [str(p.relative_to(folder)) for p, r in zip(paths, read) if not r[2]]
            report["gate"][str(folder)] = {"images": len(paths), "corrected": len(corrected),
                                           "green_over_blue_min": round(float(ratios.min()), 3),
                                           "green_over_blue_p1": round(float(np.percentile(ratios, 1)), 3),
                                           "plasma_blue_minus_red_range": [round(float(lamps.min()), 3),
                                                                           round(float(lamps.max()), 3)],
                                           "corrected_files": corrected[:50]}
            print(f"{folder}: {len(corrected)} of {len(paths)} crops would be corrected (green/blue min "
                  f"{ratios.min():.2f}, 1st percentile {np.percentile(ratios, 1):.2f}; plasma blue - red density "
                  f"{lamps.min():.3f} to {lamps.max():.3f})", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stain_reference.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
