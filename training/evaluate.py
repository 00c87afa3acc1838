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


def predict_folder(classifier: Classifier, paths: list[str], config: Config, *, chunk: int = 64,
                   flip_tta: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crop every field as the stream does and classify it.

    Returns:
        (probabilities (n, 4), crops (n, S, S, 3), paths of fields where no cell was located).
    """
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, image_size=classifier.image_size))
    probs, crops, not_located = [], [], []
    for start in range(0, len(paths), chunk):
        batch, missed = crop_fields(paths[start : start + chunk], config)
        out = classifier.predict(batch)
        if flip_tta:  # a cell has no orientation: average over its mirror images
            out = (out + classifier.predict(batch[:, :, ::-1]) + classifier.predict(batch[:, ::-1])) / 3
        probs.append(out)
        crops.append(batch)
        not_located += missed
        log.info("classified %d / %d", min(start + chunk, len(paths)), len(paths))
    return np.concatenate(probs), np.concatenate(crops), not_located


def evaluate(classifier: Classifier, data_dir: str | Path, config: Config, out_dir: Path,
             *, flip_tta: bool = False) -> dict:
    """Evaluate on a folder data set; see ``evaluate_split``."""
    split, report = discover(data_dir)
    return evaluate_split(classifier, split, report, config, out_dir, flip_tta=flip_tta)


def evaluate_split(classifier: Classifier, split: Split, report: DataReport, config: Config, out_dir: Path,
                   *, flip_tta: bool = False) -> dict:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``mistakes.png``, ``data_report.json``.

    ``metrics.json`` holds ``accuracy``, ``macro_f1``, ``n_images`` and
    ``per_class.<class>.{precision,recall,f1,support}`` (the contract other tools use).

    Returns:
        The metrics dictionary.
    """
    probs, crops, not_located = predict_folder(classifier, list(split.paths), config, flip_tta=flip_tta)
    true = np.array(split.labels)
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(true, pred)
    metrics.update({"data": report.root, "model": str(getattr(classifier, "path", "")),
                    "flip_tta": flip_tta, "not_located": len(not_located)})
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
