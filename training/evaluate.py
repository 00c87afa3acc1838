"""Evaluate a classifier on folder data sets: metrics.json, confusion matrix, mistakes grid.

Several sources (labs) are scored apart, each in a folder of its own, and together. Class
folders outside the four count as "other": the share of them flagged is reported, and for
the four classes the share wrongly flagged.
"""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from hv.classifier import Classifier
from hv.config import Config
from hv.labels import NUM_CLASSES, OUTPUT_NAMES
from hv.preprocess import VIEWS, field_view, read_image_rgb
from stream.sinks import write_json_atomic
from training.data import DataReport, Split, discover, field_group, load_originals, source_name
from training.metrics import accuracy_interval, classification_metrics, metrics_from_confusion
from training.plots import plot_confusion, plot_mistakes

log = logging.getLogger(__name__)

_MAX_MISTAKES_SHOWN = 36


def crop_fields(paths: list[str], config: Config) -> tuple[np.ndarray, list[str]]:
    """Decode and crop fields in parallel threads, as the stream crops them.

    Returns:
        ((n, S, S, 3) uint8 RGB crops, how each cell was seen: ``hv.preprocess.VIEWS``).
    """
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: field_view(read_image_rgb(p), config), paths))
    size = config.model.image_size
    crops = np.stack([crop for crop, _ in results]) if results else np.zeros((0, size, size, 3), np.uint8)
    return crops, [view for _, view in results]


def symmetries(batch: np.ndarray) -> list[np.ndarray]:
    """The batch under the 8 symmetries of the square (4 quarter turns, each also mirrored)."""
    turns = [np.rot90(batch, k, axes=(1, 2)) for k in range(4)]
    return [np.ascontiguousarray(view) for turn in turns for view in (turn, turn[:, :, ::-1])]


def predict_folder(classifier: Classifier, paths: list[str], config: Config, *, chunk: int = 64,
                   tta: bool = False) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Crop every field as the stream does and classify it.

    Returns:
        (probabilities (n, 5), crops (n, S, S, 3), how each cell was seen: ``hv.preprocess.VIEWS``).
    """
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, image_size=classifier.image_size))
    probs, crops, views = [], [], []
    for start in range(0, len(paths), chunk):
        batch, batch_views = crop_fields(paths[start : start + chunk], config)
        if tta:  # a cell on a slide has no up, down or handedness: average over all of them
            out = np.mean([classifier.predict(view) for view in symmetries(batch)], axis=0)
        else:
            out = classifier.predict(batch)
        probs.append(out)
        crops.append(batch)
        views += batch_views
        log.info("classified %d / %d", min(start + chunk, len(paths)), len(paths))
    return np.concatenate(probs), np.concatenate(crops), views


def evaluate(classifier: Classifier, data_dirs: str | Path | list, config: Config, out_dir: Path,
             *, tta: bool = False) -> dict:
    """Evaluate on one or several folder data sets (sources).

    One source: its files go straight into ``out_dir`` (see ``evaluate_split``). Several:
    see ``evaluate_sources``.

    Returns:
        The (combined) metrics dictionary.
    """
    specs = [data_dirs] if isinstance(data_dirs, (str, Path)) else list(data_dirs)
    if len(specs) == 1:
        split, report = discover(specs[0], any_other=True, require_all=False)
        return evaluate_split(classifier, split, report, config, out_dir, tta=tta)
    sources = [(source_name(spec), *discover(spec, any_other=True, require_all=False)) for spec in specs]
    return evaluate_sources(classifier, sources, config, out_dir, tta=tta, data=[str(s) for s in specs])


def evaluate_sources(classifier: Classifier, sources: list[tuple[str, Split, DataReport]], config: Config,
                     out_dir: Path, *, tta: bool = False, data: list[str] | str = "") -> dict:
    """Score each (name, split, report) apart, in ``out_dir/<name>/``, and all of them together.

    ``out_dir/metrics.json`` scores all sources together, with ``sources.<name>`` holding
    each one's headline figures.

    Returns:
        The combined metrics dictionary.
    """
    matrix, per_source, answers = 0, {}, []
    for name, split, report in sources:
        folder = out_dir / name.replace("/", "_").replace("#", "_")
        metrics = evaluate_split(classifier, split, report, config, folder, tta=tta, answers=answers)
        matrix = matrix + np.array(metrics["confusion_matrix"])
        per_source[name] = _headline(metrics) | {"folder": folder.name}
    combined = metrics_from_confusion(matrix)
    groups, true, pred = (sum((a[0] for a in answers), []), np.concatenate([a[1] for a in answers]),
                          np.concatenate([a[2] for a in answers]))
    combined["accuracy_ci95"], combined["accuracy_ci95_method"] = accuracy_interval(groups, true, pred)
    combined.update({"data": data, "model": str(getattr(classifier, "path", "")), "tta": tta,
                     "sources": per_source})
    plot_confusion(np.array(combined["confusion_matrix"]), out_dir / "confusion_matrix.png",
                   f"all sources: accuracy {combined['accuracy']:.1%}, n = {combined['n_images']}")
    write_json_atomic(out_dir / "metrics.json", combined)
    return combined


def _headline(metrics: dict) -> dict:
    """The figures a summary quotes for one source."""
    head = {k: metrics[k] for k in ("accuracy", "accuracy_ci95", "accuracy_ci95_method", "macro_f1", "n_images",
                                    "flagged_share")}
    head["per_class_recall"] = {k: round(v["recall"], 4) for k, v in metrics["per_class"].items() if v["support"]}
    if "other" in metrics:
        head["other"] = metrics["other"]
    head["by_view"] = metrics["by_view"]
    return head


def evaluate_split(classifier: Classifier, split: Split, report: DataReport, config: Config, out_dir: Path,
                   *, tta: bool = False, answers: list | None = None) -> dict:
    """Write ``metrics.json``, ``confusion_matrix.png``, ``mistakes.png``, ``data_report.json``.

    ``metrics.json`` holds ``accuracy`` (its 95 % interval ``accuracy_ci95`` draws whole
    original fields where the data holds copies of them, ``accuracy_ci95_method`` says how),
    ``macro_f1``, ``n_images`` (cells of the four classes), ``flagged_share``,
    ``per_class.<class>.{precision,recall,f1,support,flagged_share}`` and, when the data
    holds cells outside the four, ``other.{n,flagged_share}`` (the contract other tools use), and
    ``by_view.<view>.{n,accuracy}``: the four-class cells whose located cell was whole, cut by the
    image edge (what the stream would not classify) or not found (``hv.preprocess.field_view``).
    ``predictions.csv`` gives each image's answer, view and every output's probability.
    ``answers``, if given, gets (each image's original, true, predicted) appended.

    Returns:
        The metrics dictionary.
    """
    probs, crops, views = predict_folder(classifier, list(split.paths), config, tta=tta)
    true = np.array(split.labels)
    pred = probs.argmax(axis=1)
    metrics = classification_metrics(true, pred)
    metrics["by_view"] = accuracy_by_view(true, pred, views)
    not_located = [path for path, view in zip(split.paths, views) if view == "not_located"]
    # Copies of one original field are one cell: the interval draws originals where they repeat.
    originals = load_originals(config.data.original_groups)
    groups = [field_group(p, y, originals=originals) for p, y in zip(split.paths, split.labels)]
    metrics["accuracy_ci95"], metrics["accuracy_ci95_method"] = accuracy_interval(groups, true, pred)
    if answers is not None:  # for an interval over several sources
        answers.append(([f"{report.root}|{g}" for g in groups], true, pred))
    metrics.update({"data": report.root, "model": str(getattr(classifier, "path", "")),
                    "tta": tta, "not_located": len(not_located)})
    out_dir.mkdir(parents=True, exist_ok=True)
    report.not_located = not_located
    report.write(out_dir / "data_report.json")
    plot_confusion(np.array(metrics["confusion_matrix"]), out_dir / "confusion_matrix.png",
                   f"{source_name(report.root)}: accuracy {metrics['accuracy']:.1%}, n = {metrics['n_images']}")
    wrong = np.flatnonzero(pred != true)[:_MAX_MISTAKES_SHOWN]
    plot_mistakes([crops[i] for i in wrong],
                  [f"{OUTPUT_NAMES[true[i]]} -> {OUTPUT_NAMES[pred[i]]} ({probs[i].max():.2f})" for i in wrong],
                  out_dir / "mistakes.png")
    with (out_dir / "predictions.csv").open("w") as f:
        # Every output's probability too: thresholds (when to flag "other") can be drawn from a validation run.
        f.write(",".join(["path", "true", "predicted", "confidence", "view", *(f"p_{n}" for n in OUTPUT_NAMES)]) + "\n")
        for path, t, p, prob, view in zip(split.paths, true, pred, probs, views):
            f.write(f"{_csv_field(path)},{OUTPUT_NAMES[t]},{OUTPUT_NAMES[p]},{prob.max():.4f},{view},"
                    + ",".join(f"{v:.4f}" for v in prob) + "\n")
    write_json_atomic(out_dir / "metrics.json", metrics)  # written last: its presence means the folder is complete
    return metrics


def accuracy_by_view(true: np.ndarray, pred: np.ndarray, views: list[str]) -> dict:
    """Four-class cells and their accuracy for each way the cell was seen (whole, cut by the image edge, not found).

    A cut cell is what the stream never classifies; a data set of shifted copies holds many.
    """
    four = true < NUM_CLASSES
    result = {}
    for view in VIEWS:
        chosen = four & (np.asarray(views) == view)
        if chosen.any():
            result[view] = {"n": int(chosen.sum()), "accuracy": round(float((pred[chosen] == true[chosen]).mean()), 4)}
    return result


def _csv_field(text: str) -> str:
    """A path as one CSV field (quoted when it holds a comma or a quote)."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
