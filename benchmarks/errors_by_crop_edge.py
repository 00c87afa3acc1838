"""Error rate of an evaluation split by whether the cell's crop window reaches past the frame, and by field.

Reads the ``predictions.csv`` that ``hv evaluate`` writes, locates the cell of each image
again, and groups images two ways: by the crop window (inside the frame, past an edge and
filled by ``locator.edge_fill``, no cell located) and by the cell's own box (whole, cut by
the frame edge, no cell located). The crop window is measured as ``hv.locator.crop_cell``
cuts it, with the frame's own expected diameter (``cell_diameter_px``: "auto" reads it from
the red cells). Also counts errors per original field (``data.original_groups``: the
shipped grouping of blood-cells/ by original; an image it does not list falls back to the
``_<field>_<copy>`` id of its name) to show whether a few originals or many copies carry
the errors, and in how many originals over half of the copies are classified right.

Usage: python benchmarks/errors_by_crop_edge.py EVAL_DIR [--config config.toml]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from hv.config import load_config
from hv.labels import CLASS_NAMES, class_index
from hv.locator import cell_diameter_px, locate_cells
from hv.preprocess import read_image_rgb
from training.data import field_group, load_originals

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_dir")
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    args = parser.parse_args()
    config = load_config(args.config)
    locator = config.locator
    originals = load_originals(config.data.original_groups)
    groups = {"inside": [0, 0], "past_edge": [0, 0], "not_located": [0, 0]}
    cell_box = {"whole": [0, 0], "cut_by_frame_edge": [0, 0], "not_located": [0, 0]}
    by_field: dict[tuple[str, str], list[int]] = {}  # (class, original) -> [images, errors]
    with open(Path(args.eval_dir) / "predictions.csv", newline="") as f:
        for row in csv.DictReader(f):
            image = read_image_rgb(row["path"])
            height, width = image.shape[:2]
            diameter = cell_diameter_px(image, locator)
            boxes = locate_cells(image, locator, diameter)
            if not len(boxes):
                group = cut = "not_located"
            else:
                x1, y1, x2, y2 = boxes[0]
                half = max(locator.crop_context * diameter, x2 - x1, y2 - y1) / 2
                cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
                inside = cx - half >= 0 and cy - half >= 0 and cx + half <= width and cy + half <= height
                group = "inside" if inside else "past_edge"
                edge = 2  # px: the locator's box reaches the border when the cell is cut
                cut = ("cut_by_frame_edge" if min(x1, y1) <= edge or x2 >= width - 1 - edge
                       or y2 >= height - 1 - edge else "whole")
            wrong = row["true"] != row["predicted"]
            for counts in (groups[group], cell_box[cut]):
                counts[0] += 1
                counts[1] += wrong
            field = (row["true"], field_group(row["path"], class_index(row["true"]), originals=originals))
            by_field.setdefault(field, [0, 0])
            by_field[field][0] += 1
            by_field[field][1] += wrong
    def rates(table):
        return {k: {"images": n, "errors": e, "error_rate": round(e / n, 4) if n else None}
                for k, (n, e) in table.items()}

    result = {"crop_window": rates(groups), "cell_box": rates(cell_box),
              "originals_with_over_half_of_copies_right": sum(2 * e < n for n, e in by_field.values()),
              "originals": len(by_field)}
    result["errors_by_original"] = {  # [original, errors, images], most errors first
        name: sorted(([group.rsplit(":", 1)[-1], e, n] for (true, group), (n, e) in by_field.items() if true == name),
                     key=lambda item: -item[1])
        for name in CLASS_NAMES}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
