"""Teach a model a new lab from its own surest calls: the head retrained on them, no label needed.

``hv adapt`` moves a model's normalisation statistics to a new lab; the head still draws the
boundaries it learnt on the training labs, and some of them fall wrong on the new lab's
features. After adapting, the cells the model calls most surely are mostly right, and they
are this lab's cells: retraining the head on the ``PER_CLASS`` surest cells of each class it
calls (``training.lab_tuning``'s recipe, as with labelled cells) moves those boundaries to
this lab, with no label (self-training on pseudo-labels, e.g. Lee 2013). Taking the same number
of each class keeps a smear's neutrophil majority from becoming the head's prior, and taking
only the surest keeps most of the wrong calls out.

The cells outside the four are not taken: the model's "other" calls on a new lab are the
least sure of its answers. So the head is retuned as for four-class labels
(``tune_on_labelled``: a model that learnt "other" is put back against it).

An option (``hv adapt --self-train``), not the default: on validation cells it took models
trained on one lab (which never learnt "other") +6.5 points on average over adapting alone
(-0.4 to +13.9 over 8 cases), while the bundled model, which did learn "other", gained about 2
points under simulated microscopes that need adapting, lost 2-4 points on cells like its
training labs', and flagged 3-10 % of ordinary cells "other" (BENCHMARKS.md, "Self-training on a
new lab's cells").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import numpy as np

from hv.labels import CLASS_NAMES
from hv.preprocess import to_model_batch
from training.lab_tuning import check_labels, flagged_text, per_class_text, tune_on_labelled

# The surest cells of each class taken as labels. Chosen on validation cells (a blood-cells model adapted to
# PBC: 10 per class 77.2 %, 25 per class 79.6 %, every cell 71.8 %, from 67.4 % adapted; BENCHMARKS.md,
# "Self-training on a new lab's cells").
PER_CLASS = 25


@dataclass(frozen=True)
class SelfTrainingReport:
    """What the head was retrained on, saved in ``<model>.adapt.json`` under ``self_trained``."""

    cells: int  # the lab's cells the model called
    called: dict[str, int]  # how many of them it called each of the four classes
    taken: dict[str, int]  # the surest of each class, taken as labels
    least_confidence: dict[str, float]  # the lowest top probability among each class's taken cells
    tuning: dict  # the TuningReport


def own_calls_text(own: dict) -> str:
    """What the head learnt from (a ``SelfTrainingReport`` as a dict), as ``hv adapt`` prints it."""
    return (f"its head retrained on its own surest calls, {per_class_text(own['taken'])} of the {own['cells']} "
            f"cells (it called {per_class_text(own['called'])}; no label used); {flagged_text(own['tuning'])}")


def surest_cells(probabilities: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the ``per_class`` cells called each of the four classes with the highest probability.

    Fewer for a class called fewer times; cells called "other" are never taken.
    """
    called = probabilities.argmax(1)
    confidence = probabilities.max(1)
    taken = []
    for k in range(len(CLASS_NAMES)):
        members = np.flatnonzero(called == k)
        taken.append(members[np.argsort(-confidence[members], kind="stable")[:per_class]])
    return np.concatenate(taken).astype(np.int64)


def tune_on_own_calls(model: keras.Model, crops_rgb: np.ndarray, *, per_class: int = PER_CLASS,
                      learnt_other: bool | None = None, batch_size: int = 64, seed: int = 0) -> SelfTrainingReport:
    """Retrain the head of ``model`` (each run's, for an average) on its surest calls over ``crops_rgb``, in place.

    Args:
        model: a classifier from ``hv train`` or ``hv average``, already adapted to the lab's statistics.
        crops_rgb: (n, S, S, 3) uint8 crops of the lab's cells (those it was adapted on).
        per_class: the surest cells of each called class taken as labels.
        learnt_other: as ``tune_on_labelled``'s.

    Raises:
        ValueError: the model calls too few of the cells one of the four classes to learn from
            (``tune_on_labelled``'s least: 8 cells of 2 classes).
    """
    crops = np.asarray(crops_rgb)
    probabilities = np.concatenate([np.asarray(model(to_model_batch(crops[i:i + batch_size]), training=False))
                                    for i in range(0, len(crops), batch_size)])
    called = probabilities.argmax(1)
    taken = surest_cells(probabilities, per_class)
    labels = called[taken]
    try:
        check_labels(labels)
    except ValueError as exc:
        raise ValueError(f"the model called too few of the {len(crops)} cells one of the four classes to learn "
                         f"from its own calls: {exc}") from exc
    tuning = tune_on_labelled(model, crops[taken], labels, anchor_crops=crops,
                              learnt_other=learnt_other, seed=seed)
    return SelfTrainingReport(
        cells=len(crops),
        called={name: int((called == k).sum()) for k, name in enumerate(CLASS_NAMES)},
        taken={name: int((labels == k).sum()) for k, name in enumerate(CLASS_NAMES)},
        least_confidence={name: round(float(probabilities[taken[labels == k]].max(1).min()), 4)
                          for k, name in enumerate(CLASS_NAMES) if (labels == k).any()},
        tuning=asdict(tuning))
