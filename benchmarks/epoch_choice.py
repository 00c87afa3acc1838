"""How many epochs of fine-tuning: every epoch's model of a few runs, scored on each run's held-out images.

``hv train --keep-epoch-models`` saves ``epoch_NN.keras`` after every epoch. Within a phase
the learning rate is constant, so the model after epoch N is the model a run of N epochs
gives. For each run folder this scores the epoch models from the end of phase 1 on (0, 1, …
phase-2 epochs) on the images that run held out (``training.heldout``: its
``validation.txt``, minus copies of originals it trained on), source by source: four-class
accuracy, for blood-cells/ also the accuracy with every original weighted alike (one
original can hold 300 copies), and the share of pbc/OTHER flagged. Each image is cropped
once per run and every epoch's model classifies the same crops. No TEST set is read.

Then it applies the rule BENCHMARKS.md wrote down before the runs ("How many epochs of
fine-tuning"): the configured count stays unless a shorter one gains at least ``--min-gain``
of blood-cells held-out accuracy as a mean over the runs, both by image and by original, is
ahead in most runs, and loses at most ``--max-pbc-loss`` of pbc/TRAIN accuracy and
``--max-other-loss`` of pbc/OTHER flagged.

``--compare MODEL`` also scores another model of the same seed (trained apart, e.g. an earlier
run of the same recipe) on that run's held-out images: the run-to-run noise of one recipe.

Writes ``epoch_choice.json`` and ``epoch_choice.png`` to ``--out``.

Usage: python benchmarks/epoch_choice.py runs/two_labs_epochs_seed1 runs/two_labs_epochs_seed0 ...
       [--compare runs/two_labs_mirrorgroups_seed0/model.keras] [--out out/epoch_choice]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from hv.classifier import KerasClassifier
from hv.config import load_config
from hv.labels import CLASS_NAMES, OTHER_ID
from training.data import field_group, load_originals
from training.evaluate import crop_fields
from training.heldout import held_out_sources, model_split, saved_config
from training.metrics import accuracy_per_group, classification_metrics

BLOOD_CELLS, PBC, OTHER = "blood-cells/TRAIN", "pbc/TRAIN", "pbc/OTHER#train"


def epoch_models(run: Path) -> dict[int, Path]:
    """Phase-2 epochs done -> the model saved then (0 = the end of phase 1)."""
    first = json.loads((run / "config.json").read_text())["train"]["phase1"]["epochs"]
    found = {int(p.stem.split("_")[1]) - first: p for p in run.glob("epoch_*.keras")}
    if not found:
        raise SystemExit(f"{run}: no epoch_NN.keras; train it with hv train --keep-epoch-models")
    return {k: found[k] for k in sorted(found) if k >= 0}


def held_out_crops(run_model: Path, config) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per source: (crops, labels, each image's original field) of the images the run held out."""
    originals = load_originals("bundled")
    crops = {}
    for name, split, _ in held_out_sources(model_split(run_model, config)):
        images, _ = crop_fields(list(split.paths), config)
        groups = [field_group(p, y, originals=originals) for p, y in zip(split.paths, split.labels)]
        crops[name] = (images, np.array(split.labels), groups)
    return crops


def scores(model: Path, crops: dict) -> dict[str, dict[str, float]]:
    """Per source: accuracy (four classes; "other" counts as wrong), per original, or the share flagged."""
    classifier = KerasClassifier(model)
    found = {}
    for name, (images, labels, groups) in crops.items():
        pred = classifier.predict(images).argmax(axis=1)
        metrics = classification_metrics(labels, pred)
        four = labels < OTHER_ID
        entry = {"n": int(len(labels))}
        if four.any():
            entry["accuracy"] = metrics["accuracy"]
            entry["per_original"] = accuracy_per_group(list(np.array(groups)[four]), pred[four] == labels[four])
            eosinophils = metrics["per_class"][CLASS_NAMES[0]]
            entry["eosinophil_recall"] = eosinophils["recall"] if eosinophils["support"] else None
        if "other" in metrics:
            entry["flagged"] = metrics["other"]["flagged_share"]
        found[name] = entry
    return found


def choose(results: dict, default: int, min_gain: float, max_pbc_loss: float, max_other_loss: float) -> dict:
    """The rule of BENCHMARKS.md applied to ``results[run][epochs][source]``."""
    runs = list(results)

    def mean(epochs: int, source: str, key: str) -> float:
        return statistics.fmean(results[r][epochs][source][key] for r in runs)

    verdicts = {}
    for epochs in sorted(next(iter(results.values()))):
        if epochs == default:
            continue
        gain = mean(epochs, BLOOD_CELLS, "accuracy") - mean(default, BLOOD_CELLS, "accuracy")
        gain_per_original = mean(epochs, BLOOD_CELLS, "per_original") - mean(default, BLOOD_CELLS, "per_original")
        ahead = sum(results[r][epochs][BLOOD_CELLS]["accuracy"] > results[r][default][BLOOD_CELLS]["accuracy"]
                    for r in runs)
        pbc_loss = mean(default, PBC, "accuracy") - mean(epochs, PBC, "accuracy")
        other_loss = mean(default, OTHER, "flagged") - mean(epochs, OTHER, "flagged")
        passes = (epochs < default and gain >= min_gain and gain_per_original > 0 and ahead * 2 > len(runs)
                  and pbc_loss <= max_pbc_loss and other_loss <= max_other_loss)
        verdicts[epochs] = {"blood_cells_gain": gain, "blood_cells_gain_per_original": gain_per_original,
                            "runs_ahead": ahead, "pbc_loss": pbc_loss, "other_flagged_loss": other_loss,
                            "passes": passes}
    passing = [e for e, v in verdicts.items() if v["passes"]]
    chosen = default
    if passing:
        best = max(verdicts[e]["blood_cells_gain"] for e in passing)
        chosen = min(e for e in passing if verdicts[e]["blood_cells_gain"] >= best - 0.005)
    return {"default": default, "chosen": chosen, "candidates": verdicts}


def plot(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ((BLOOD_CELLS, "accuracy", "blood-cells held out (images)"),
              (BLOOD_CELLS, "per_original", "blood-cells, originals alike"),
              (PBC, "accuracy", "pbc/TRAIN held out"), (OTHER, "flagged", "pbc/OTHER flagged"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, (source, key, title) in zip(axes, panels):
        for run, by_epoch in results.items():
            epochs = sorted(by_epoch)
            ax.plot(epochs, [100 * by_epoch[e][source][key] for e in epochs], marker="o", label=Path(run).name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("phase-2 epochs")
        ax.set_xticks(sorted(next(iter(results.values()))))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("%")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders trained with --keep-epoch-models")
    parser.add_argument("--compare", nargs="*", type=Path, default=[],
                        help="models of the same seeds trained apart, scored on the matching run's held-out images")
    parser.add_argument("--out", type=Path, default=Path("out/epoch_choice"))
    parser.add_argument("--min-gain", type=float, default=0.02)
    parser.add_argument("--max-pbc-loss", type=float, default=0.003)
    parser.add_argument("--max-other-loss", type=float, default=0.02)
    args = parser.parse_args()
    config = load_config(Path(__file__).resolve().parents[1] / "config.toml")
    results, compared, default = {}, {}, None
    for run in args.runs:
        models = epoch_models(run)
        saved = json.loads((run / "config.json").read_text())
        default = saved["train"]["phase2"]["epochs"] if default is None else default
        first_epochs = set(next(iter(results.values()))) if results else set(models)
        if saved["train"]["phase2"]["epochs"] != default or set(models) != first_epochs:
            raise SystemExit(f"{run}: trained for other epochs than {args.runs[0]}; compare runs of one recipe")
        crops = held_out_crops(models[max(models)], config)
        print(f"{run}: {', '.join(f'{k} {len(v[1])}' for k, v in crops.items())} held-out images", flush=True)
        results[str(run)] = {epochs: scores(path, crops) for epochs, path in models.items()}
        for epochs, found in results[str(run)].items():
            print(f"  {epochs} phase-2 epochs: " + "; ".join(
                f"{source} " + " ".join(f"{k} {v:.4f}" for k, v in entry.items() if isinstance(v, float))
                for source, entry in found.items()), flush=True)
        for other in args.compare:
            if saved_config(other)[1]["train"]["seed"] == saved["train"]["seed"]:
                compared[str(other)] = {"same_split_as": str(run), "scores": scores(other, crops)}
                print(f"  {other}: {compared[str(other)]['scores']}", flush=True)
    decision = choose(results, default, args.min_gain, args.max_pbc_loss, args.max_other_loss)
    print(json.dumps(decision, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "epoch_choice.json").write_text(
        json.dumps({"runs": results, "compared": compared, "decision": decision}, indent=2) + "\n")
    plot(results, args.out / "epoch_choice.png")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
