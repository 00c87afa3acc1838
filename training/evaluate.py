"""Evaluate a classifier on a folder data set: metrics.json, confusion matrix, mistakes grid."""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hv.classifier import Classifier
from hv.config import Config
from hv.labels import CLASS_NAMES
from hv.preprocess import field_to_model_input, read_image_rgb
from training.data import DataReport, Split, discover
from training.metrics import classification_metrics
from training.plots import plot_confusion, plot_mistakes

log = logging.getLogger(__name__)

_MAX_MISTAKES_SHOWN = 36


def crop_fields(paths: list[str], config: Config) -> tuple[np.ndarray, list[str]]:
    """Decode and crop fields in parallel threads, as the stream crops them.

    Returns:
        ((n, S, S, 3) uint8 RGB crops, paths of fields where no cell was located).
    """
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: field_to_model_input(read_image_rgb(p), config), paths))
    size = config.model.image_size
    crops = np.stack([crop for crop, _ in results]) if results else np.zeros((0, size, size, 3), np.uint8)
    return crops, [p for p, (_, located) in zip(paths, results) if not located]


def symmetries(batch: np.ndarray) -> list[np.ndarray]:
    """The batch under the 8 symmetries of the square (4 quarter turns, each also mirrored)."""
    turns = [np.rot90(batch, k, axes=(1, 2)) for k in range(4)]
    return [np.ascontiguousarray(view) for turn in turns for view in (turn, turn[:, :, ::-1])]


def predict_folder(classifier: Classifier, paths: list[str], config: Config, *, chunk: int = 64,
                   tta: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crop every field as the stream does and classify it.

    Returns:
        (probabilities (n, 4), crops (n, S, S, 3), paths of fields where no cell was located).
    """
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, image_size=classifier.image_size))
    probs, crops, not_located = [], [], []
    for start in range(0, len(paths), chunk):
        batch, missed = crop_fields(paths[start : start + chunk], config)
        if tta:  # a cell on a slide has no up, down or handedness: average over all of them
            out = np.mean([classifier.predict(view) for view in symmetries(batch)], axis=0)
        else:
            out = classifier.predict(batch)
        probs.append(out)
        crops.append(batch)
        not_located += missed
        log.info("classified %d / %d", min(start + chunk, len(paths)), len(paths))
    return np.concatenate(probs), np.concatenate(crops), not_located


def evaluate(classifier: Classifier, data_dir: str | Path, config: Config, out_dir: Path,
             *, tta: bool = False) -> dict:
    """Evaluate on a folder data set; see ``evaluate_split``."""
    split, report = discover(data_dir)
    return evaluate_split(classifier, split, report, config, out_dir, tta=tta)


def evaluate_split(classifier: Classifier, split: Split, report: DataReport, config: Config, out_dir: Path,
                   *, tta: bool = False) -> dict:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``mistakes.png``, ``data_report.json``.

    ``metrics.json`` holds ``accuracy``, ``macro_f1``, ``n_images`` and
    ``per_class.<class>.{precision,recall,f1,support}`` (the contract other tools use).

    Returns:
        The metrics dictionary.
    """
    probs, crops, not_located = predict_folder(classifier, list(split.paths), config, tta=tta)
    true = np.array(split.labels)
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(true, pred)
    metrics.update({"data": report.root, "model": str(getattr(classifier, "path", "")),
                    "tta": tta, "not_located": len(not_located)})
    out_dir.mkdir(parents=True, exist_ok=True)
    report.not_located = not_located
    report.write(out_dir / "data_report.json")
    plot_confusion(np.array(metrics["confusion_matrix"]), out_dir / "confusion_matrix.png",
                   f"{Path(report.root).name}: accuracy {metrics['accuracy']:.1%}, n = {len(true)}")
    wrong = np.flatnonzero(pred != true)[:_MAX_MISTAKES_SHOWN]
    plot_mistakes([crops[i] for i in wrong],
                  [f"{CLASS_NAMES[true[i]]} -> {CLASS_NAMES[pred[i]]} ({probs[i].max():.2f})" for i in wrong],
                  out_dir / "mistakes.png")
    with (out_dir / "predictions.csv").open("w") as f:
        f.write("path,true,predicted,confidence\n")
        for path, t, p, prob in zip(split.paths, true, pred, probs):
            f.write(f"{path},{CLASS_NAMES[t]},{CLASS_NAMES[p]},{prob.max():.4f}\n")
    tmp = out_dir / "metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2) + "\n")
    tmp.replace(out_dir / "metrics.json")  # written last: its presence means the folder is complete
    return metrics
