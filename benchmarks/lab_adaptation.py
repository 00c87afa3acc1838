"""Adapting to another lab without labels: which BatchNorm layers to re-estimate, on validation only.

For each model (trained on one lab), the other lab's labelled folder is split at random in
two halves (seeded): the cells of one half adapt the model (``training.lab_adaptation``:
labels unused), the other half is scored, against the same half unadapted. The folder is
a TRAIN set of the other lab (the cross-lab validation set), never a TEST set: the choice of
layers is made here; TEST is scored afterwards with ``hv adapt`` and ``hv evaluate``.

    python benchmarks/lab_adaptation.py --models runs/bc_only_seed1/model.keras \\
        --folder ../shared/data/pbc/TRAIN --layers none top_bn stem_bn stem_bn,top_bn

Writes ``lab_adaptation.json`` (top-1, macro-F1 and recall per model and layer set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hv.classifier import KerasClassifier
from hv.config import load_config
from hv.labels import CLASS_NAMES
from hv.preprocess import field_to_model_input, read_image_rgb
from training.data import discover
from training.lab_adaptation import normalisation_layer_names, reestimate_statistics, whole_cell_crops
from training.metrics import classification_metrics

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", required=True, help=".keras models trained on the other lab")
    parser.add_argument("--folder", default=str(ROOT / "../shared/data/pbc/TRAIN"),
                        help="the lab to adapt to, labelled (class folders): a TRAIN set, never a TEST set")
    parser.add_argument("--layers", nargs="+", default=["none", "top_bn", "stem_bn", "stem_bn,top_bn"],
                        help="layer sets to try: comma-separated names, 'none' or 'all' (all 49 of Lite0: one "
                             "pass per layer, slow)")
    parser.add_argument("--adapt-images", type=int, default=0, help="adapt on only this many images of the half")
    parser.add_argument("--score-images", type=int, default=0, help="score only this many images of the other half")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "out/lab_adaptation"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    started = time.perf_counter()
    split, _ = discover(args.folder)
    paths, labels = np.array([str(p) for p in split.paths]), np.array(split.labels)
    order = np.random.default_rng(args.seed).permutation(len(paths))
    adapt_half, score_half = order[: len(order) // 2], order[len(order) // 2:]
    if args.adapt_images:
        adapt_half = adapt_half[: args.adapt_images]
    if args.score_images:
        score_half = score_half[: args.score_images]
    adapt_crops = np.stack([crop for i in adapt_half for crop in whole_cell_crops(read_image_rgb(paths[i]), config)])
    score_crops = np.stack([field_to_model_input(read_image_rgb(paths[i]), config)[0] for i in score_half])
    score_labels = labels[score_half]
    print(f"{len(adapt_crops)} cells to adapt on ({len(adapt_half)} images), {len(score_crops)} to score "
          f"[{time.perf_counter() - started:.0f} s]", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for model_path in args.models:
        results[model_path] = {}
        for layer_set in args.layers:
            classifier = KerasClassifier(model_path)  # a fresh copy for each set
            names = {"none": [], "all": normalisation_layer_names(classifier.model)}.get(layer_set,
                                                                                         layer_set.split(","))
            if names:
                reestimate_statistics(classifier.model, adapt_crops, names)
            predicted = classifier.predict(score_crops).argmax(1)
            metrics = classification_metrics(score_labels, predicted)
            row = {"top1": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                   "recall": {name: metrics["per_class"][name]["recall"] for name in CLASS_NAMES},
                   "layers": len(names)}
            results[model_path][layer_set] = row
            print(f"{model_path}  {layer_set:>16}: top-1 {row['top1']:.3f}, macro-F1 {row['macro_f1']:.3f}, recall "
                  f"{' / '.join(f'{v:.2f}' for v in row['recall'].values())}  [{time.perf_counter() - started:.0f} s]",
                  flush=True)
            # Written after every row: a long run stopped early keeps what it measured.
            (out / "lab_adaptation.json").write_text(json.dumps({
                "folder": args.folder, "seed": args.seed, "adapt_images": len(adapt_half),
                "adapt_cells": len(adapt_crops), "scored": len(score_crops), "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
