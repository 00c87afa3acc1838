"""Does calibrating int8 on the new lab help? Agreement with the Keras model on a new lab's held-out cells.

For a model adapted to a new lab (``hv adapt``), ``hv export --lab-data`` calibrates and
fine-tunes its int8 variants on that lab's unlabelled cells; a plain ``hv export`` does so
on the config's training data. This scores the variants of both exports on the same cells:
the ones ``hv export --lab-data`` held out from calibration (the same seed and draw), so
neither export has seen them. No labels are read.

Example (the adapted seed-0 blood-cells model and its two exports, BENCHMARKS.md):

    python benchmarks/int8_new_lab_agreement.py --config benchmarks/configs/blood_cells_only.toml \\
        --model runs/bc_only_seed0/adapted_stem_top_pbc.keras --lab-data ../shared/data/pbc/TRAIN \\
        --exports out/xlab/bc_only_seed0/adapted_stem_top_export out/xlab/bc_only_seed0/adapted_stem_top_export_lab
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.config import load_config
from mobile.export import new_lab_data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the config the exports were made with")
    parser.add_argument("--model", required=True, help="the adapted .keras model both exports came from")
    parser.add_argument("--lab-data", nargs="+", required=True, help="the new lab's images, as given to hv export")
    parser.add_argument("--exports", nargs="+", required=True, help="hv export output folders (their variants/)")
    parser.add_argument("--variants", nargs="+", default=["int8", "int8_mixed", "float16"])
    parser.add_argument("--out", default="out/int8_new_lab_agreement.json")
    args = parser.parse_args()

    config = load_config(args.config)
    data = new_lab_data(args.lab_data, config, tuple(args.variants), None, None)
    reference = KerasClassifier(Path(args.model)).predict(data.verification).argmax(1)
    results = {"cells": int(len(reference)), "held_out_from": data.chosen_on, "agreement": {}}
    for export in map(Path, args.exports):
        report = json.loads((export / "verification.json").read_text())
        row = {"chosen_on": report["chosen_on"], "calibration_images": report["calibration_images"]}
        for variant in args.variants:
            path = export / "variants" / f"{variant}.tflite"
            if path.is_file():
                answers = LiteRTClassifier(path).predict(data.verification).argmax(1)
                row[variant] = round(float(np.mean(answers == reference)), 4)
        results["agreement"][str(export)] = row
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
