"""How long the check before adapting takes: one backbone pass per run against a pass per layer.

The check (``hv adapt --check``, the web page's *Check*, and the first step of every adapting)
is ``training.lab_adaptation.check_cells``: the class-balanced feature shift of up to 300 cells.
Both ways are timed in one process, alternately, on the same cells of a lab, and must give the
same figures.

    python benchmarks/check_time.py [--model models/hv_lite0.keras] [--cells 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier
from hv.config import load_config
from hv.preprocess import field_to_model_input, read_image_rgb
from training.data import discover
from training.lab_adaptation import check_cells

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--data", default=str(ROOT / "../shared/data/pbc/TRAIN"), help="class folders of a lab")
    parser.add_argument("--cells", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "out" / "check_time.json"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    split, _ = discover(args.data)
    picked = np.random.default_rng(0).permutation(len(split.paths))[: args.cells]
    crops = np.stack([field_to_model_input(read_image_rgb(split.paths[i]), config)[0] for i in picked])
    model = KerasClassifier(args.model).model
    check_cells(model, crops[:16])  # first calls build and trace: not part of any timing
    check_cells(model, crops[:16], one_pass=False)
    seconds: dict[str, list[float]] = {"one pass per run": [], "a pass per layer": []}
    shifts = {}
    for _ in range(args.repeats):
        for way, one_pass in (("one pass per run", True), ("a pass per layer", False)):
            started = time.perf_counter()
            shifts[way] = check_cells(model, crops, one_pass=one_pass).feature_shift
            seconds[way].append(round(time.perf_counter() - started, 2))
            print(f"{way}: {seconds[way][-1]:.1f} s {shifts[way]}", flush=True)
    medians = {way: float(np.median(v)) for way, v in seconds.items()}
    report = {"model": Path(args.model).name, "cells": len(crops), "repeats": args.repeats, "seconds": seconds,
              "seconds_median": medians, "ratio": round(medians["one pass per run"] / medians["a pass per layer"], 3),
              "feature_shift": shifts}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"medians {medians}, ratio {report['ratio']} -> {args.out}")


if __name__ == "__main__":
    main()
