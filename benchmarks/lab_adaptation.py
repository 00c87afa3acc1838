"""Adapting to another lab without labels: which BatchNorm layers to re-estimate, on validation only.

For each model (trained on one lab), the other lab's labelled folder is split at random in
two halves (seeded): the cells of one half adapt the model (``training.lab_adaptation``:
labels unused), the other half is scored, against the same half unadapted. The folder is
a TRAIN set of the other lab (the cross-lab validation set), never a TEST set: the choice of
layers is made here; TEST is scored afterwards with ``hv adapt`` and ``hv evaluate``.

    python benchmarks/lab_adaptation.py --models runs/bc_only_seed1/model.keras \\
        --folder ../shared/data/pbc/TRAIN --layers none top_bn stem_bn stem_bn,top_bn

A layer set written ``balanced:stem_bn,top_bn`` weighs the adapting cells so that each class
the unadapted model calls them counts alike (``class_balancing_weights``), as in the
statistics ``hv train`` stores. A layer set written ``rebased:top_bn`` first rebases the
layers on the training lab's cells (``--source-folder``: ``rebase_statistics``, which
changes nothing the model computes) and then re-estimates them on the other lab: the other
lab's features get the training lab's mean and variance instead of zero and one.
``--adapt-mix`` draws the adapting half with a given class mix (a real smear is mostly
neutrophils), to check that adapting survives it.

``--labelled-per-class N ...`` then also retrains the head on N labelled cells of each class
from the adapting half (``training.lab_tuning``; each from another original field), after the
layer set's adapting: what a technician's corrections teach the model. ``--self-train N ...``
retrains it instead on the adapted model's own N surest calls of each class among the
adapting cells (``training.self_training``: no label). ``--by-original``
splits the halves by original field (``data.original_groups``: blood-cells/ holds dozens of
copies of each), so no scored cell is a copy of an adapting or labelled one.

Writes ``lab_adaptation.json`` (top-1, macro-F1 and recall per model and layer set) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from hv.classifier import KerasClassifier
from hv.config import Config, load_config
from hv.labels import CLASS_NAMES, OTHER_ID
from hv.model import member_models
from hv.preprocess import field_to_model_input, read_image_rgb
from training.data import discover, discover_sources, field_group, load_originals, split_by_field
from training.lab_adaptation import (
    class_balancing_weights,
    feature_shift,
    normalisation_layer_names,
    rebase_statistics,
    reestimate_statistics,
    training_lab_crops,
    whole_cell_crops,
)
from training.lab_tuning import HEAD_LAYERS, STRENGTH, TRAIN_DENSE, learnt_other, tune_on_labelled
from training.metrics import classification_metrics
from training.self_training import tune_on_own_calls
from training.trained_crop import CROP_KEYS, trained_crop, with_trained_crop

ROOT = Path(__file__).resolve().parents[1]


def with_class_mix(indices: np.ndarray, labels: np.ndarray, mix: str, size: int = 0) -> np.ndarray:
    """The first ``indices`` (order kept) whose labels follow ``mix`` ("name=share,..."): ``size`` of them, or the most.

    The quota of each class is set for the subset's own size: the first ``size`` images of a
    larger mixed subset would follow the order of ``indices`` (nearly balanced), not the mix.
    """
    shares = {CLASS_NAMES.index(name.strip()): float(share) for name, share in
              (item.split("=") for item in mix.split(","))}
    available = {k: int((labels[indices] == k).sum()) for k in shares}
    total = min(available[k] / share for k, share in shares.items() if share > 0)
    if size:
        total = min(total, size / sum(shares.values()))
    keep = {k: int(round(total * share)) for k, share in shares.items()}
    chosen, taken = [], dict.fromkeys(shares, 0)
    for i in indices:
        k = int(labels[i])
        if k in keep and taken[k] < keep[k]:
            chosen.append(i)
            taken[k] += 1
    return np.array(chosen)


def labelled_subset(indices: np.ndarray, labels: np.ndarray, groups: list[str], per_class: int) -> np.ndarray:
    """The first ``per_class`` of ``indices`` (order kept) of each class, each from an original field not yet taken."""
    chosen, taken, seen = [], dict.fromkeys(range(len(CLASS_NAMES)), 0), set()
    for i in indices:
        k = int(labels[i])
        if k in taken and taken[k] < per_class and groups[i] not in seen:
            chosen.append(i)
            taken[k] += 1
            seen.add(groups[i])
    return np.array(chosen, int)


def add_tuning_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of retraining the head on labelled cells or its own calls, shared with synthetic_labs.py."""
    parser.add_argument("--labelled-per-class", type=int, nargs="+", default=[0],
                        help="also retrain the adapted model's head on this many labelled cells of each class "
                             "(0: not); several numbers, several rows")
    parser.add_argument("--tuning-head", nargs="+", default=["dense+pred" if TRAIN_DENSE else "pred"],
                        choices=["dense+pred", "pred"],
                        help="what labelled cells retrain: the dense and pred layers, or pred alone; several, "
                             "several rows")
    parser.add_argument("--tuning-strength", type=float, nargs="+", default=[STRENGTH],
                        help="the pull towards the trained head when tuning on labelled cells; several, several rows")
    parser.add_argument("--self-train", type=int, nargs="+", default=[], metavar="PER_CLASS",
                        help="also retrain the adapted model's head on its own surest calls, this many per class "
                             "(training.self_training: hv adapt --self-train); several numbers, several rows")
    parser.add_argument("--other-step", choices=["auto", "always"], default="auto",
                        help="put the four classes back against 'other' after tuning: as hv adapt does (auto: not "
                             "for a model whose training held no 'other' cell), or always (the step before "
                             "2026-12-06's third session)")


def tuning_learnt_other(model_path: str | Path, other_step: str) -> bool | None:
    """What ``tune_on_labelled`` is told the model learnt (``--other-step``): as hv adapt reads it, or 'unknown'."""
    return learnt_other(model_path) if other_step == "auto" else None


def head_weights(model) -> list:
    """Each run's dense and pred weights (to start every labelled tuning from the same adapted model)."""
    return [[member.get_layer(name).get_weights() for name in HEAD_LAYERS] for member in member_models(model)]


def restore_head_weights(model, weights: list) -> None:
    for member, saved in zip(member_models(model), weights):
        for name, values in zip(HEAD_LAYERS, saved):
            member.get_layer(name).set_weights(values)


def score_row(classifier: KerasClassifier, crops: np.ndarray, labels: np.ndarray) -> dict:
    return score_calls(classifier.predict(crops).argmax(1), labels)


def score_calls(called: np.ndarray, labels: np.ndarray) -> dict:
    """Top-1, macro-F1, the share flagged "other" and per-class recall of the output ids ``called``."""
    metrics = classification_metrics(labels, called)
    return {"top1": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
            "flagged_other": round(float((called == OTHER_ID).mean()), 4),
            "recall": {name: metrics["per_class"][name]["recall"] for name in CLASS_NAMES}}


def models_crop(config: Config, models: list[str]) -> Config:
    """``config`` cutting crops as the models were trained; one set of crops serves them all, so they must agree."""
    # A setting a model does not state (saved before it existed) keeps the config's value, as with_trained_crop does.
    settings = {model: {key: getattr(config.locator, key) for key in CROP_KEYS} | trained_crop(model)
                for model in models}
    if len({json.dumps(crop, sort_keys=True) for crop in settings.values()}) > 1:
        raise SystemExit("the models were trained on crops cut differently, and one set of crops is scored on all: "
                         + "; ".join(f"{model}: {crop}" for model, crop in settings.items())
                         + ". Run them apart")
    return with_trained_crop(config, models[0])


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
    parser.add_argument("--source-folder", default="",
                        help="the training lab's TRAIN folder (class folders), for layer sets written rebased:NAMES")
    parser.add_argument("--source-images", type=int, default=1000,
                        help="images of the source folder to rebase on, the same number per class (training_lab_crops)")
    parser.add_argument("--adapt-mix", default="",
                        help="class shares of the adapting cells, e.g. neutrophil=0.6,lymphocyte=0.3,monocyte=0.06,"
                             "eosinophil=0.04: the most images of the half that keep this mix")
    add_tuning_arguments(parser)
    parser.add_argument("--by-original", action="store_true",
                        help="split the halves by original field (data.original_groups), not image by image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "config.toml"),
                        help="the data and locator settings; the crop settings the models were trained with "
                             "(training.trained_crop: stain correction, context, edge fill) replace its own")
    parser.add_argument("--out", default=str(ROOT / "out/lab_adaptation"))
    args = parser.parse_args()

    config = models_crop(load_config(args.config), args.models)
    started = time.perf_counter()
    split, _ = discover(args.folder)
    paths, labels = np.array([str(p) for p in split.paths]), np.array(split.labels)
    order = np.random.default_rng(args.seed).permutation(len(paths))
    originals = load_originals(config.data.original_groups)
    groups = [field_group(p, y, "", originals) for p, y in zip(paths, labels)]
    if args.by_original:
        in_first = set(split_by_field(split, 0.5, args.seed, originals)[0].paths)
        adapt_half = np.array([i for i in order if split.paths[i] in in_first])
        score_half = np.array([i for i in order if split.paths[i] not in in_first])
    else:
        adapt_half, score_half = order[: len(order) // 2], order[len(order) // 2:]
    if args.adapt_mix:
        adapt_half = with_class_mix(adapt_half, labels, args.adapt_mix, args.adapt_images)
    elif args.adapt_images:
        adapt_half = adapt_half[: args.adapt_images]
    if args.score_images:
        score_half = score_half[: args.score_images]
    adapt_crops = np.stack([crop for i in adapt_half for crop in whole_cell_crops(read_image_rgb(paths[i]), config)])
    score_crops = np.stack([field_to_model_input(read_image_rgb(paths[i]), config)[0] for i in score_half])
    score_labels = labels[score_half]
    labelled = {n: labelled_subset(adapt_half, labels, groups, n) for n in args.labelled_per_class if n}
    labelled_crops = {n: np.stack([field_to_model_input(read_image_rgb(paths[i]), config)[0] for i in chosen])
                      for n, chosen in labelled.items()}
    source_crops = None
    if any(layer_set.removeprefix("balanced:").startswith("rebased:") for layer_set in args.layers):
        if not args.source_folder:
            raise SystemExit("layer sets written rebased:NAMES need --source-folder (the training lab's TRAIN folder)")
        source_crops = training_lab_crops(discover_sources([args.source_folder])[0], config, args.source_images,
                                          args.seed)
    print(f"{len(adapt_crops)} cells to adapt on ({len(adapt_half)} images), {len(score_crops)} to score "
          f"[{time.perf_counter() - started:.0f} s]", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for model_path in args.models:
        results[model_path] = {}
        for layer_set in args.layers:
            classifier = KerasClassifier(model_path)  # a fresh copy for each set
            balanced = layer_set.startswith("balanced:")  # each class the model calls the cells weighs alike
            rebased = layer_set.removeprefix("balanced:").startswith("rebased:")
            spec = layer_set.removeprefix("balanced:").removeprefix("rebased:")
            names = {"none": [], "all": normalisation_layer_names(classifier.model)}.get(spec, spec.split(","))
            if rebased:
                rebase_statistics(classifier.model, source_crops, names)
            if layer_set == "none":  # how far the adapting cells lie from the statistics the model holds
                for key, balanced in (("feature_shift", False), ("feature_shift_balanced", True)):
                    results[model_path][key] = feature_shift(classifier.model, adapt_crops, balanced=balanced)
            if names:
                weights = class_balancing_weights(classifier.model, adapt_crops) if balanced else None
                reestimate_statistics(classifier.model, adapt_crops, names, weights=weights)
            adapted_head = head_weights(classifier.model)
            tunings = [(0, None, None)] * (0 in args.labelled_per_class) + [
                (n, strength, head) for n in args.labelled_per_class if n for strength in args.tuning_strength
                for head in args.tuning_head] + [(n, None, "own calls") for n in args.self_train]
            for per_class, strength, head in tunings:
                key, row = layer_set, {"layers": len(names)}
                if head == "own calls":  # the head retrained on the adapted model's surest calls, no label
                    restore_head_weights(classifier.model, adapted_head)
                    own = tune_on_own_calls(classifier.model, adapt_crops, per_class=per_class,
                                            learnt_other=tuning_learnt_other(model_path, args.other_step))
                    key = f"{layer_set} + self-trained, {per_class}/class"
                    row["self_trained"] = asdict(own)
                elif per_class:  # the adapted model's head retrained on labelled cells, from the same start each time
                    restore_head_weights(classifier.model, adapted_head)
                    tuning = tune_on_labelled(classifier.model, labelled_crops[per_class], labels[labelled[per_class]],
                                              strength=strength, train_dense=head == "dense+pred",
                                              anchor_crops=adapt_crops, seed=args.seed,
                                              learnt_other=tuning_learnt_other(model_path, args.other_step))
                    key = f"{layer_set} + {per_class}/class labelled, {head}, pull {strength:g}"
                    row["labelled"] = asdict(tuning)
                row = score_row(classifier, score_crops, score_labels) | row
                results[model_path][key] = row
                print(f"{model_path}  {key:>20}: top-1 {row['top1']:.3f}, flagged {row['flagged_other']:.3f}, "
                      f"macro-F1 {row['macro_f1']:.3f}, recall "
                      f"{' / '.join(f'{v:.2f}' for v in row['recall'].values())}  "
                      f"[{time.perf_counter() - started:.0f} s]", flush=True)
                # Written after every row: a long run stopped early keeps what it measured.
                (out / "lab_adaptation.json").write_text(json.dumps({
                    "folder": args.folder, "seed": args.seed, "adapt_mix": args.adapt_mix,
                    "by_original": args.by_original,
                    "adapt_labels": {name: int((labels[adapt_half] == k).sum()) for k, name in enumerate(CLASS_NAMES)},
                    "source_folder": args.source_folder,
                    "source_crops": 0 if source_crops is None else len(source_crops),
                    "adapt_images": len(adapt_half),
                    "adapt_cells": len(adapt_crops), "scored": len(score_crops), "results": results},
                    indent=2) + "\n")


if __name__ == "__main__":
    main()
