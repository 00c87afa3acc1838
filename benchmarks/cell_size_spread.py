"""How large each lab's white cells look in the classifier's crop, per class.

The crop is cut at the expected cell diameter that ``cell_diameter_px`` estimates per image
(red cells, then the nucleus bounds), so a cell's apparent size in the crop is its located
box (sqrt(w*h)) over that estimate. If two labs' ratios agree per class, the scale is found
alike in both; if one lab's spread is wider, a model taught at the other's spread (its
``augment.zoom``) meets cells that look larger or smaller than any it learnt. The cell is
the one the classifier sees (``hv.preprocess.field_view``: the largest located cell).

The located box can stop short of a cell (an eosinophil's pale cytoplasm), so ``--bccd`` adds
the cells' true sizes where they are known: each BCCD field with one annotated white cell and
one of the four labels, its annotated box over the field's expected diameter (blood-cells/
images are copies of these fields).

Usage: python benchmarks/cell_size_spread.py [--folders ../shared/data/blood-cells/TRAIN ../shared/data/pbc/TRAIN]
       [--per-class 100] [--seed 0] [--bccd ../shared/data/bccd] [--out out/cell_size_spread.json]
       [--plot docs/figures/cell_size_spread.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scale_accuracy import draw  # benchmarks/ is on sys.path when run as a script

from hv.annotations import read_field_labels, read_voc_boxes
from hv.config import load_config
from hv.labels import OUTPUT_NAMES, class_index
from hv.locator import cell_diameter_px, locate_cells
from hv.preprocess import read_image_rgb

REPO = Path(__file__).resolve().parent.parent


def draw_by_class(folder: Path, per_class: int, seed: int) -> dict[str, list[Path]]:
    """``scale_accuracy.draw``'s files, grouped by class (output name, or the folder's own for unknown ones)."""
    drawn: dict[str, list[Path]] = {}
    for path in draw(folder, per_class, seed):
        index = class_index(path.parent.name, other=True)
        drawn.setdefault(OUTPUT_NAMES[index] if index is not None else path.parent.name, []).append(path)
    return drawn


def apparent_size(path: Path, locator) -> float | None:
    """The largest located cell's sqrt(w*h) over the expected diameter; None if no cell is located."""
    image = read_image_rgb(str(path))
    diameter = cell_diameter_px(image, locator)
    boxes = locate_cells(image, locator, diameter)
    if not len(boxes):
        return None
    x0, y0, x1, y1 = boxes[0]
    return float(np.sqrt((x1 - x0) * (y1 - y0)) / diameter)


def annotated_sizes(bccd: Path, locator) -> dict[str, np.ndarray]:
    """Per class, the annotated white cell's sqrt(w*h) over the expected diameter, fields with one white cell."""
    sizes: dict[str, list[float]] = {}
    for field, label in sorted(read_field_labels(bccd).items()):
        xml = bccd / "Annotations" / f"{field}.xml"
        if not xml.exists():  # labelled, but not among the fields this copy holds
            continue
        boxes = read_voc_boxes(xml, "WBC")
        if len(boxes) != 1:
            continue
        x0, y0, x1, y1 = boxes[0]
        image = read_image_rgb(str(bccd / "JPEGImages" / f"{field}.jpg"))
        size = np.sqrt((x1 - x0) * (y1 - y0)) / cell_diameter_px(image, locator)
        sizes.setdefault(OUTPUT_NAMES[label], []).append(float(size))
    return {name: np.array(sizes[name]) for name in OUTPUT_NAMES if name in sizes}


def summary(sizes: np.ndarray, drawn: int) -> dict:
    p10, p50, p90 = np.percentile(sizes, [10, 50, 90]) if sizes.size else (np.nan,) * 3
    return {"drawn": drawn, "measured": int(sizes.size), "p10": round(float(p10), 3), "median": round(float(p50), 3),
            "p90": round(float(p90), 3)}


def plot(sizes: dict[str, dict[str, np.ndarray]], path: Path) -> None:
    """One panel per class: each folder's apparent sizes as a histogram."""
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    classes = sorted({name for per_class in sizes.values() for name in per_class})
    fig, axes = plt.subplots(1, len(classes), figsize=(3.2 * len(classes), 3), sharey=True)
    bins = np.linspace(0.4, 1.8, 29)
    for ax, name in zip(np.atleast_1d(axes), classes):
        for folder, per_class in sizes.items():
            if name in per_class:
                ax.hist(per_class[name], bins=bins, histtype="step", linewidth=1.5, density=True, label=folder)
        ax.set_title(name)
        ax.set_xlabel("cell size / expected diameter")
    np.atleast_1d(axes)[0].set_ylabel("density (area 1 per group)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", nargs="+", type=Path,
                        default=[REPO / "../shared/data/blood-cells/TRAIN", REPO / "../shared/data/pbc/TRAIN"])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bccd", type=Path, help="also the annotated white cells of these BCCD fields")
    parser.add_argument("--config", type=Path, default=REPO / "config.toml")
    parser.add_argument("--out", type=Path, default=REPO / "out/cell_size_spread.json")
    parser.add_argument("--plot", type=Path, help="also draw the spreads as histograms (a PNG)")
    args = parser.parse_args()
    locator = load_config(args.config).locator
    print("folder, class: cells measured / drawn, apparent size 10th / 50th / 90th percentile, 90th / 10th")
    groups: list[tuple[str, dict[str, np.ndarray], dict[str, int]]] = []
    for folder in args.folders:
        if not folder.is_dir():
            raise SystemExit(f"{folder}: not a folder of class folders")
        drawn = draw_by_class(folder, args.per_class, args.seed)
        sizes = {name: np.array([s for s in (apparent_size(f, locator) for f in files) if s is not None])
                 for name, files in drawn.items()}
        groups.append((f"{folder.parent.name}/{folder.name}", sizes, {n: len(f) for n, f in drawn.items()}))
    if args.bccd:
        sizes = annotated_sizes(args.bccd, locator)
        groups.append(("bccd, annotated boxes", sizes, {n: len(v) for n, v in sizes.items()}))
    report = {}
    for label, sizes, drawn in groups:
        report[label] = {name: summary(values, drawn[name]) for name, values in sizes.items()}
        for name, row in report[label].items():
            print(f"{label}, {name}: {row['measured']} / {row['drawn']}, {row['p10']:.2f} / {row['median']:.2f} / "
                  f"{row['p90']:.2f}, {row['p90'] / row['p10']:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"per_class": args.per_class, "seed": args.seed, "folders": report}, indent=2))
    print(f"wrote {args.out}")
    if args.plot:
        plot({label: sizes for label, sizes, _ in groups}, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
