"""Teach a model a new lab from a few labelled cells: its head retrained on them, the backbone kept.

``hv adapt`` without labels moves a model's normalisation statistics to a new lab; what the
head learnt from the training labs stays. A technician who has corrected cells on the
Review page (or labelled a few by hand) holds what no statistic can give: which of this
microscope's cells are which. Retraining the whole model needs the training labs' data and
half an hour per run on a laptop; retraining only the head (``dense`` and ``pred``) on the
frozen backbone's features of those cells takes seconds, so a user can do it with what they
have. Each cell is seen in its eight orientations (a cell has no up or left), and each class
present weighs alike, so a smear's neutrophil majority does not become the head's prior.

Labels rarely show every class, least of all "other" (basophils, blasts and the like are
rarely corrected), and a head retrained on four-class labels alone learns that nothing is
"other": in validation it stopped flagging any of them. So the output columns of classes the
labels do not show keep their weights (``_SomeColumnsFixed``), and without an "other" label
the four classes are shifted back together against "other" over this lab's unlabelled cells
(``_restore_other_margin``), for a model that learnt "other". One whose training held no
"other" cell (``learnt_other``: hv train records what it trained on) has an "other" output that
means nothing; shifted against it, it flagged 8-22 % of a new lab's ordinary cells, and it is
left unshifted. A pull of every weight towards its trained value (``TowardsStart``,
"L2-SP", Li et al. 2018) was measured too and cost most of the gain; it stays available
(``strength``), off by default. BENCHMARKS.md, "Labelled cells of a new lab", has the figures.

An average of runs (``hv average``) has one head per run: each is retrained on its own
backbone's features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from hv.classifier import ModelLoadError
from hv.config import Config
from hv.labels import OTHER_ID, OUTPUT_NAMES
from hv.model import member_models
from hv.preprocess import field_to_model_input, read_image_rgb, to_model_batch
from training.data import DataError, discover
from training.heldout import trained_outputs

HEAD_LAYERS = ("dense", "pred")
FEATURE_LAYER = "avg_pool"
# The fewest labelled cells, and classes, worth tuning on: below this the head learns the cells, not the lab.
MIN_LABELLED_CELLS = 8
MIN_LABELLED_CLASSES = 2
# The recipe. Epochs, learning rate and batch were set beforehand; the pull (0, 0.1, 1, 10) and what is retrained
# (dense and pred, or pred alone) were chosen on validation cells only (BENCHMARKS.md, "Labelled cells of a new lab").
EPOCHS = 30
LEARNING_RATE = 1e-3
STRENGTH = 0.0  # of the pull towards the trained weights, per squared unit, against the mean cross-entropy
BATCH_SIZE = 32
TRAIN_DENSE = True  # also retrain the dense layer before pred (False: pred's columns alone, a linear probe)


class TowardsStart(keras.regularizers.Regularizer):
    """``strength`` x the squared distance of a weight from its starting value (L2-SP)."""

    def __init__(self, start: np.ndarray, strength: float):
        self.start = keras.ops.convert_to_tensor(np.asarray(start, np.float32))
        self.strength = float(strength)

    def __call__(self, weight):
        return self.strength * keras.ops.sum(keras.ops.square(weight - self.start))

    def get_config(self) -> dict:
        return {"start": keras.ops.convert_to_numpy(self.start).tolist(), "strength": self.strength}


@dataclass(frozen=True)
class TuningReport:
    """What the head was retrained on, saved in ``<model>.adapt.json`` under ``labelled``."""

    cells: int
    per_class: dict[str, int]
    epochs: int
    strength: float
    views_per_cell: int
    # Share of the labelled cells (their upright view) the model called right before and after: how much it
    # had to move. Not an accuracy on new cells (these are the cells it learnt).
    agreement_before: float
    agreement_after: float
    # Of this lab's unlabelled cells (those hv adapt adapted on; without them, the labelled cells' views), the
    # share the model flagged "other" before and after, and what each run's four classes' logits were shifted by
    # against "other" to keep them (none when a label is "other").
    lab_cells: int
    lab_cells_flagged_before: float
    lab_cells_flagged_after: float
    other_shifts: list[float]
    # Whether the model's training held "other" cells (``learnt_other``; None: nothing beside the model says).
    # A model that never learnt "other" is not shifted against it: its "other" logit means nothing.
    model_learnt_other: bool | None = None


def learnt_other(model_path: str | Path) -> bool | None:
    """Whether the training of the model at ``model_path`` held "other" cells (None: nothing beside it says)."""
    outputs = trained_outputs(model_path)
    return None if outputs is None else OUTPUT_NAMES[OTHER_ID] in outputs


def per_class_text(per_class: dict[str, int]) -> str:
    """'4 eosinophil, 4 neutrophil, 4 other' (a report's ``per_class``)."""
    return ", ".join(f"{n} {name}" for name, n in per_class.items())


def flagged_text(tuned: dict) -> str:
    """How many of the lab's unlabelled cells the tuned model flags "other" (a ``TuningReport`` as a dict)."""
    never = ('; the model never learnt "other" (its training held no such cell), so its four classes were not '
             'shifted against it') if tuned.get("model_learnt_other") is False else ""
    return (f'{tuned["lab_cells_flagged_after"]:.0%} of the {tuned["lab_cells"]} unlabelled cells flagged "other" '
            f'({tuned["lab_cells_flagged_before"]:.0%} before){never}')


def labelled_cells(folders: Sequence[str], config: Config) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The crops and output ids of the images in class folders (a Review page's corrections folder, say).

    Each folder holds a sub-folder per class (the four, "other", or a cell type outside them); a
    class may be missing. Each image gives the crop ``hv train`` would take from it. Unreadable
    images are skipped and named (``training.data.discover``).

    Returns:
        (crops, labels, skipped files).

    Raises:
        DataError: a folder is missing or holds no class folder with a readable image, or the labelling is too
            thin to tune on (``check_labels``); the message names the folders.
    """
    crops, labels, skipped = [], [], []
    for folder in folders:
        if not Path(folder).is_dir():
            raise DataError(f"{folder}: not a folder; labelled cells are class folders (eosinophil/, neutrophil/, "
                            "...) of images, as the web page's corrections folder")
        split, report = discover(folder, any_other=True, require_all=False)
        skipped += [item["path"] for item in report.skipped]
        crops += [field_to_model_input(read_image_rgb(path), config)[0] for path in split.paths]
        labels += split.labels
    if not crops:
        raise DataError(f"no labelled images under {', '.join(map(str, folders))}")
    try:
        check_labels(np.array(labels, np.int64))
    except ValueError as exc:
        raise DataError(f"{', '.join(map(str, folders))}: {exc}") from exc
    return np.stack(crops), np.array(labels, np.int64), skipped


def dihedral_views(crops_rgb: np.ndarray, views: int = 8) -> np.ndarray:
    """(n * views, S, S, 3): each crop in its first ``views`` of the eight rotations and mirrorings, crop by crop."""
    crops = np.asarray(crops_rgb)
    turns = [np.rot90(crops, k, axes=(1, 2)) for k in range(4)]
    every = turns + [t[:, :, ::-1] for t in turns]
    return np.stack(every[:views], axis=1).reshape(-1, *crops.shape[1:])


def _head_layers(member: keras.Model) -> tuple[keras.layers.Layer, keras.layers.Layer, keras.layers.Layer]:
    try:
        return tuple(member.get_layer(name) for name in (FEATURE_LAYER, *HEAD_LAYERS))
    except ValueError as exc:
        raise ModelLoadError(f"{member.name}: tuning on labelled cells needs a model from hv train (layers "
                             f"{FEATURE_LAYER}, {', '.join(HEAD_LAYERS)}): {exc}") from exc


def _features(member: keras.Model, crops_rgb: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pooled backbone features of each crop under ``member`` (its BatchNorm statistics as they are now)."""
    probe = keras.Model(member.inputs[0], member.get_layer(FEATURE_LAYER).output)
    return np.concatenate([np.asarray(probe(to_model_batch(crops_rgb[i:i + batch_size]), training=False))
                           for i in range(0, len(crops_rgb), batch_size)])


def class_weights(labels: np.ndarray) -> np.ndarray:
    """One weight per cell, each class present weighing alike in total, the mean weight 1."""
    counts = np.bincount(labels, minlength=len(OUTPUT_NAMES)).astype(np.float64)
    present = int((counts > 0).sum())
    return (len(labels) / (present * counts[labels])).astype(np.float32)


class _SomeColumnsFixed(keras.layers.Layer):
    """A softmax Dense layer whose ``fixed`` output columns keep their weights while the others learn.

    A class the labelled cells do not show (often "other": basophils, blasts and the like are
    rarely corrected) has nothing to learn from them; trained with the rest it would only be
    pushed down on every cell, and Adam turns that small, steady push into large steps.
    """

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, fixed: np.ndarray, strength: float, **kwargs):
        super().__init__(**kwargs)
        free = ~fixed
        self.order = np.argsort(np.concatenate([np.flatnonzero(free), np.flatnonzero(fixed)]))
        self.free_kernel = self.add_weight(shape=kernel[:, free].shape, initializer="zeros",
                                           regularizer=TowardsStart(kernel[:, free], strength))
        self.free_bias = self.add_weight(shape=bias[free].shape, initializer="zeros",
                                         regularizer=TowardsStart(bias[free], strength))
        self.fixed_kernel = self.add_weight(shape=kernel[:, fixed].shape, initializer="zeros", trainable=False)
        self.fixed_bias = self.add_weight(shape=bias[fixed].shape, initializer="zeros", trainable=False)
        for weight, value in ((self.free_kernel, kernel[:, free]), (self.free_bias, bias[free]),
                              (self.fixed_kernel, kernel[:, fixed]), (self.fixed_bias, bias[fixed])):
            weight.assign(value)

    def call(self, hidden):
        logits = keras.ops.matmul(hidden, self.free_kernel) + self.free_bias
        if self.fixed_kernel.shape[1]:  # oneDNN refuses a product with no output column
            logits = keras.ops.concatenate([logits, keras.ops.matmul(hidden, self.fixed_kernel) + self.fixed_bias],
                                           axis=-1)
        return keras.ops.softmax(keras.ops.take(logits, self.order, axis=-1))

    def dense_weights(self) -> list[np.ndarray]:
        """The kernel and bias of the whole layer, columns back in output order."""
        kernel = np.concatenate([np.asarray(self.free_kernel), np.asarray(self.fixed_kernel)], axis=1)
        bias = np.concatenate([np.asarray(self.free_bias), np.asarray(self.fixed_bias)])
        return [kernel[:, self.order], bias[self.order]]


def _tune_head(member: keras.Model, features: np.ndarray, labels: np.ndarray, weights: np.ndarray,
               anchors: np.ndarray, *, epochs: int, learning_rate: float, strength: float, batch_size: int,
               seed: int, train_dense: bool, restore_other: bool) -> float | None:
    """Retrain ``member``'s pred layer (and dense, if ``train_dense``) on pooled features, in place.

    The pred columns of classes absent from ``labels`` keep their weights; with ``train_dense`` off
    their answers keep exactly the trained model's logits. Without an "other" label and with
    ``restore_other``, the four classes are then shifted back against "other" over the ``anchors``
    (pooled features of this lab's cells: ``_restore_other_margin``), and the shift is returned
    (None when no shift was made).
    """
    _, dense, pred = _head_layers(member)
    dropout = next((layer.rate for layer in member.layers if isinstance(layer, keras.layers.Dropout)), 0.0)
    keras.utils.set_random_seed(seed)
    kernel, bias = dense.get_weights()
    new_dense = keras.layers.Dense(dense.units, activation=dense.activation, trainable=train_dense,
                                   kernel_regularizer=TowardsStart(kernel, strength),
                                   bias_regularizer=TowardsStart(bias, strength))
    fixed = np.bincount(labels, minlength=pred.units) == 0
    new_pred = _SomeColumnsFixed(*pred.get_weights(), fixed, strength, dtype="float32")
    inputs = keras.Input((features.shape[1],))
    head = keras.Model(inputs, new_pred(new_dense(keras.layers.Dropout(dropout)(inputs))))
    new_dense.set_weights([kernel, bias])
    head.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    head.fit(features, labels, sample_weight=weights, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    level_before = _four_class_logsumexp(dense, pred, anchors)
    dense.set_weights(new_dense.get_weights())
    pred.set_weights(new_pred.dense_weights())
    if (labels == OTHER_ID).any() or not restore_other:
        return None
    return _restore_other_margin(dense, pred, anchors, level_before)


def _four_class_logsumexp(dense: keras.layers.Layer, pred: keras.layers.Layer, features: np.ndarray) -> np.ndarray:
    """Per cell, logsumexp of the four classes' logits: their level, against which "other" stands."""
    four = np.delete(_logits(dense, pred, features), OTHER_ID, axis=1)
    top = four.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(four - top).sum(axis=1, keepdims=True)))[:, 0]


def _logits(dense: keras.layers.Layer, pred: keras.layers.Layer, features: np.ndarray) -> np.ndarray:
    kernel, bias = pred.get_weights()
    return np.asarray(dense(features), np.float64) @ kernel + bias


def _probabilities(member: keras.Model, features: np.ndarray) -> np.ndarray:
    """``member``'s answer from its pooled features, through its head as it is now."""
    _, dense, pred = _head_layers(member)
    logits = _logits(dense, pred, features)
    odds = np.exp(logits - logits.max(axis=1, keepdims=True))
    return odds / odds.sum(axis=1, keepdims=True)


def _restore_other_margin(dense: keras.layers.Layer, pred: keras.layers.Layer, anchors: np.ndarray,
                          level_before: np.ndarray) -> float:
    """Shift the four classes' biases together so that, over ``anchors``, their level is where it was.

    Labels without an "other" cell push the four classes up on every cell they show, and cells
    of other types are then flagged far less (in validation, 84 % of them before tuning, 5-68 %
    after). One constant added to the four biases changes nothing among the four and puts the
    median of their logsumexp over this lab's cells back where it was. The "other" logit is
    left to the retrained ``dense`` layer: its own column is kept, its input is not. (Putting
    back the margin against "other" instead, or flagging no more of the lab's cells than before,
    kept fewer cells of other types flagged: BENCHMARKS.md, "Labelled cells of a new lab".)
    Not for a model trained without "other" cells (``tune_on_labelled``'s ``learnt_other``):
    its "other" logit means nothing, and this step flagged 8-22 % of a new lab's ordinary cells
    (validation, three draws); skipped, it read 92.1 against 85.5 % (10 cells per class) and
    95.9 against 77.2 % (50), none flagged (BENCHMARKS.md, step 6).

    Returns:
        The shift added to the four classes' logits.
    """
    shift = float(np.median(level_before - _four_class_logsumexp(dense, pred, anchors)))
    kernel, bias = pred.get_weights()
    bias[np.arange(len(bias)) != OTHER_ID] += shift
    pred.set_weights([kernel, bias])
    return shift


def check_labels(labels: np.ndarray) -> None:
    """Refuse labelling too thin to tune on, or labels that are not output ids (ValueError, saying which)."""
    if len(labels) and (labels.min() < 0 or labels.max() >= len(OUTPUT_NAMES)):
        raise ValueError(f"labels must be output ids 0-{len(OUTPUT_NAMES) - 1} ({', '.join(OUTPUT_NAMES)})")
    classes = len(np.unique(labels))
    if len(labels) < MIN_LABELLED_CELLS or classes < MIN_LABELLED_CLASSES:
        raise ValueError(f"{len(labels)} labelled cells of {classes} classes; retraining the head needs at least "
                         f"{MIN_LABELLED_CELLS} cells of {MIN_LABELLED_CLASSES} classes or more")


def tune_on_labelled(model: keras.Model, crops_rgb: np.ndarray, labels: Sequence[int], *, epochs: int = EPOCHS,
                     learning_rate: float = LEARNING_RATE, strength: float = STRENGTH, views: int = 8,
                     train_dense: bool = TRAIN_DENSE, anchor_crops: np.ndarray | None = None,
                     learnt_other: bool | None = None, batch_size: int = BATCH_SIZE, seed: int = 0) -> TuningReport:
    """Retrain the head of ``model`` (each run's, for an average) on labelled crops, in place.

    Args:
        model: a classifier from ``hv train`` or ``hv average`` (already adapted with ``hv adapt``'s
            statistics, if it is to be: the head learns the features the backbone gives now).
        crops_rgb: (n, S, S, 3) uint8 crops, as the classifier sees them.
        labels: (n,) output ids (``hv.labels.OUTPUT_NAMES``; "other" included).
        epochs, learning_rate, strength, train_dense: the recipe (the module's constants were chosen on validation).
        views: orientations of each crop trained on (1-8).
        anchor_crops: more of this lab's cells, unlabelled (those ``hv adapt`` adapted on), over which the four
            classes are put back against "other" when no label is "other" (without them, over the labelled cells).
        learnt_other: whether the model's training held "other" cells (``learnt_other``): False skips putting
            the four classes back against "other"; None (not known) puts them back, as for a model that did.

    Raises:
        ValueError: fewer than ``MIN_LABELLED_CELLS`` cells or ``MIN_LABELLED_CLASSES`` classes, or labels that are
            not output ids.
    """
    labels = np.asarray(labels, np.int64)
    crops = np.asarray(crops_rgb)
    if len(labels) != len(crops):
        raise ValueError(f"{len(crops)} crops but {len(labels)} labels")
    check_labels(labels)
    present = np.unique(labels)
    if not 1 <= views <= 8:
        raise ValueError(f"views must be 1-8 (the rotations and mirrorings of a crop), got {views}")
    members = member_models(model)
    for member in members:
        _head_layers(member)  # a model without the head is refused before any work
    before = _agreement(model, crops, labels)
    view_crops = dihedral_views(crops, views)
    view_labels = np.repeat(labels, views)
    weights = np.repeat(class_weights(labels), views)
    shifts, lab_before, lab_after = [], [], []
    for index, member in enumerate(members):
        features = _features(member, view_crops)
        # The labelled cells were learnt, so they stand higher than new cells would: the unlabelled are the anchor.
        anchors = features if anchor_crops is None or not len(anchor_crops) else _features(member, anchor_crops)
        lab_before.append(_probabilities(member, anchors))
        shift = _tune_head(member, features, view_labels, weights, anchors, epochs=epochs,
                           learning_rate=learning_rate, strength=strength, batch_size=batch_size, seed=seed + index,
                           train_dense=train_dense, restore_other=learnt_other is not False)
        lab_after.append(_probabilities(member, anchors))
        shifts += [] if shift is None else [round(shift, 4)]
    return TuningReport(
        cells=len(labels), per_class={OUTPUT_NAMES[k]: int((labels == k).sum()) for k in present},
        epochs=epochs, strength=strength, views_per_cell=views,
        agreement_before=before, agreement_after=_agreement(model, crops, labels),
        lab_cells=len(lab_before[0]), lab_cells_flagged_before=_share_flagged(lab_before),
        lab_cells_flagged_after=_share_flagged(lab_after), other_shifts=shifts, model_learnt_other=learnt_other)


def _share_flagged(probabilities: list[np.ndarray]) -> float:
    """The share of cells an average of runs (their probabilities, run by run) calls "other"."""
    return round(float(np.mean(np.mean(probabilities, axis=0).argmax(axis=1) == OTHER_ID)), 4)


def _agreement(model: keras.Model, crops: np.ndarray, labels: np.ndarray, batch_size: int = 64) -> float:
    called = np.concatenate([np.asarray(model(to_model_batch(crops[i:i + batch_size]), training=False)).argmax(1)
                             for i in range(0, len(crops), batch_size)])
    return round(float(np.mean(called == labels)), 4)
