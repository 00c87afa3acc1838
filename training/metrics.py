"""Classification metrics in plain NumPy (no scikit-learn at run time).

Labels and predictions are output ids (``hv.labels.OUTPUT_NAMES``): the four classes and
"other" (4). Accuracy, recall and F1 are over the cells of the four classes, where a cell
flagged "other" counts as a mistake; images of cells outside the four are scored apart,
by the share of them that is flagged.
"""

from __future__ import annotations

import math

import numpy as np

from hv.labels import CLASS_NAMES, NUM_OUTPUTS, OTHER_ID, OUTPUT_NAMES


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int = NUM_OUTPUTS) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return matrix


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion (sound for small n and p near 1)."""
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def grouped_interval(groups: list[str], correct: np.ndarray, draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % interval of the mean of ``correct`` from a bootstrap that draws whole groups.

    Copies of one original (an augmented data set holds dozens) are not independent cells:
    drawing images would give an interval several times too narrow.
    """
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    ids = np.array([index[g] for g in groups])
    right = np.bincount(ids, weights=correct, minlength=len(names))
    total = np.bincount(ids, minlength=len(names)).astype(float)
    picks = np.random.default_rng(seed).integers(0, len(names), size=(draws, len(names)))
    accuracy = right[picks].sum(axis=1) / total[picks].sum(axis=1)
    low, high = np.percentile(accuracy, [2.5, 97.5])
    return float(low), float(high)


def group_members(groups: list[str]) -> dict[str, list[int]]:
    """Each group's indices into ``groups``, groups in the order first seen."""
    members: dict[str, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    return members


def accuracy_per_group(groups: list[str], correct: np.ndarray) -> float:
    """Mean of each group's share right: every original weighted alike, however many copies it has."""
    correct = np.asarray(correct, float)
    return float(np.mean([correct[m].mean() for m in group_members(groups).values()]))


def accuracy_interval(groups: list[str], true: np.ndarray, pred: np.ndarray) -> tuple[list[float], str]:
    """The 95 % interval of four-class accuracy that fits the data, and how it was made.

    Where some original field has several images (``groups``: each image's original) the
    bootstrap draws originals; with one image per cell, Wilson's interval.
    """
    four = np.asarray(true) < OTHER_ID
    groups = [g for g, keep in zip(groups, four) if keep]
    correct = (np.asarray(pred)[four] == np.asarray(true)[four]).astype(float)
    if not len(correct) or len(set(groups)) == len(groups):
        return list(wilson_interval(int(correct.sum()), len(correct))), "Wilson, one image per cell"
    return list(grouped_interval(groups, correct)), f"bootstrap over {len(set(groups))} original fields"


def classification_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    """Metrics of output ids ``pred`` against ``true``; see ``metrics_from_confusion``."""
    return metrics_from_confusion(confusion_matrix(true, pred))


def metrics_from_confusion(matrix: np.ndarray) -> dict:
    """Accuracy (with 95 % CI), per-class precision/recall/F1/support/flagged share, macro-F1,
    the share of four-class cells flagged "other", the confusion matrix, and for cells outside
    the four ``other: {n, flagged_share}``.
    """
    matrix = np.asarray(matrix, np.int64)
    four = matrix[:OTHER_ID]
    per_class = {}
    for i, name in enumerate(CLASS_NAMES):
        tp = int(matrix[i, i])
        predicted, support = int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support,
                           "flagged_share": int(matrix[i, OTHER_ID]) / support if support else 0.0}
    correct, total = int(np.trace(four[:, :OTHER_ID])), int(four.sum())
    low, high = wilson_interval(correct, total)
    present = [c for c in per_class.values() if c["support"]]
    result = {
        "accuracy": correct / total if total else 0.0,
        "accuracy_ci95": [low, high],
        "macro_f1": float(np.mean([c["f1"] for c in present])) if present else 0.0,
        "n_images": total,
        "flagged_share": int(four[:, OTHER_ID].sum()) / total if total else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(OUTPUT_NAMES),
    }
    n_other = int(matrix[OTHER_ID].sum())
    if n_other:
        flagged = int(matrix[OTHER_ID, OTHER_ID])
        result["other"] = {"n": n_other, "flagged_share": flagged / n_other,
                           "flagged_share_ci95": list(wilson_interval(flagged, n_other))}
    return result
