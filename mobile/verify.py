"""Check TFLite variants with the LiteRT interpreter against the Keras model they came from."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hv.classifier import LiteRTClassifier
from training.metrics import confusion_matrix


class VerificationError(AssertionError):
    """A converted model disagrees with its Keras source more than allowed."""


def median_latency_ms(model_path: Path, crop_rgb: np.ndarray, num_threads: int, repeats: int = 50) -> float:
    """Median wall time of one batch-1 inference, after warm-up."""
    classifier = LiteRTClassifier(model_path, num_threads=num_threads)
    batch = crop_rgb[None]
    for _ in range(5):
        classifier.predict(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        classifier.predict(batch)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def verify_litert(model_path: Path, reference_probs: np.ndarray, crops_rgb: np.ndarray,
                  labels: np.ndarray | None = None, min_agreement: float | None = None) -> dict:
    """Compare a .tflite model's predictions with the Keras reference on the same crops.

    Args:
        model_path: the .tflite file.
        reference_probs: (n, 4) probabilities of the Keras model it came from, on ``crops_rgb``.
        crops_rgb: (n, S, S, 3) uint8 crops made by the shared crop function.
        labels: (n,) true class ids, for accuracy; None skips it.
        min_agreement: raise if top-1 agreement is below this.

    Returns:
        ``top1_agreement``, ``max_abs_prob_diff``, ``accuracy`` (or None), ``size_mb``,
        ``latency_ms_1_thread``, ``latency_ms_2_threads``; with labels also the
        ``confusion_matrix`` (rows true classes, columns predictions) and the Keras model's,
        ``reference_confusion_matrix``.

    Raises:
        VerificationError: agreement below ``min_agreement``.
    """
    litert = LiteRTClassifier(model_path, num_threads=2)
    ours, theirs = litert.predict(crops_rgb), reference_probs
    agreement = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    result = {
        "top1_agreement": agreement,
        "max_abs_prob_diff": float(np.abs(ours - theirs).max()),
        "accuracy": float(np.mean(ours.argmax(1) == labels)) if labels is not None else None,
        "reference_accuracy": float(np.mean(theirs.argmax(1) == labels)) if labels is not None else None,
        "size_mb": round(model_path.stat().st_size / 1e6, 2),
        "latency_ms_1_thread": round(median_latency_ms(model_path, crops_rgb[0], 1), 2),
        "latency_ms_2_threads": round(median_latency_ms(model_path, crops_rgb[0], 2), 2),
    }
    if labels is not None:
        result["confusion_matrix"] = confusion_matrix(labels, ours.argmax(1)).tolist()
        result["reference_confusion_matrix"] = confusion_matrix(labels, theirs.argmax(1)).tolist()
    if min_agreement is not None and agreement < min_agreement:
        raise VerificationError(f"{model_path}: top-1 agreement {agreement:.3f} with Keras is below {min_agreement}")
    return result
