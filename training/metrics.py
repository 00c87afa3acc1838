"""Classification metrics in plain NumPy (no scikit-learn at run time)."""

from __future__ import annotations

import math

import numpy as np

from hv.labels import CLASS_NAMES


def confusion_matrix(true: np.ndarray, pred: np.ndarray, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """(num_classes, num_classes) counts; rows are true classes, columns predictions."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(pred)), 1)
    return matrix


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a proportion (sound for small n and p near 1)."""
    if total == 0:
        return (0.0, 0.0)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def classification_metrics(true: np.ndarray, pred: np.ndarray) -> dict:
    """Accuracy (with 95 % CI), per-class precision/recall/F1/support, macro-F1, confusion matrix."""
    matrix = confusion_matrix(true, pred)
    per_class = {}
    for i, name in enumerate(CLASS_NAMES):
        tp = int(matrix[i, i])
        predicted, support = int(matrix[:, i].sum()), int(matrix[i].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    low, high = wilson_interval(correct, total)
    return {
        "accuracy": correct / total if total else 0.0,
        "accuracy_ci95": [low, high],
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "n_images": total,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
        "class_names": list(CLASS_NAMES),
    }
