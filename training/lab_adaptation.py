"""Adapt a trained model to another lab from unlabelled images: re-estimate BatchNorm statistics.

A model trained on one lab's smears meets another lab's stain, camera and lamp as a shift in
the statistics of its features. Batch normalisation layers store the mean and variance of
their inputs; recomputing them on the new lab's cells (AdaBN, Li et al. 2016) re-centres the
features the classifier head reads, with no label needed: a user points the microscope at a
few smears, and the located cells are enough.

Our backbones keep ImageNet's statistics in every BatchNorm layer while training, so the
network learned from features that were never standardised. ``hv train`` therefore stores
the training lab's statistics in the adapted layers before saving (``rebase_statistics``:
same answers), and adapting then gives the new lab's features the training lab's mean and
variance. A model trained before that is rebased on its training folders first
(``--training-data``).

Only the layers named are re-estimated. On the cross-lab validation set (trained on
blood-cells/TRAIN, adapted on one half of pbc/TRAIN, scored on the other half) the first
and the last normalisation layers, rebased, helped most: ``stem_bn`` (the colour of the
pixels, in effect) and ``top_bn`` (the features the head reads). Adding the first block's
layers or the last block's did not help (BENCHMARKS.md, "Adapting: the new lab's features
given the training lab's statistics").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import keras
import numpy as np

from hv.classifier import KerasClassifier, ModelLoadError, file_sha256
from hv.config import Config
from hv.locator import cell_diameter_px, crop_cell, locate_cells
from hv.model import BACKBONE_LAYER, member_models
from hv.preprocess import IMAGE_SUFFIXES, ImageReadError, field_to_model_input, read_image_rgb, to_model_batch
from training.data import DataError, Split, discover_sources
from training.lab_tuning import FEATURE_LAYER, HEAD_LAYERS, labelled_cells, learnt_other, tune_on_labelled
from training.self_training import tune_on_own_calls

log = logging.getLogger(__name__)

# The first and the last normalisation layers of both backbones (Keras EfficientNet and our Lite0).
DEFAULT_LAYERS = ("stem_bn", "top_bn")
# Fewer cells than this give per-channel statistics too noisy to trust (1,280 channels).
MIN_CELLS = 32
# The advice from the class-balanced ``feature_shift`` of top_bn (in stored standard deviations,
# over at most CHECK_CELLS cells): at or below NOT_NEEDED_UP_TO the cells look like the training
# labs' and adapting is not needed; above ADVISED_ABOVE they look unlike them and it is advised;
# between, it has gone both ways. Chosen on validation cells only (BENCHMARKS.md, "Which microscope
# needs adapting"): every case at or below 0.20 gained nothing by adapting (0 to -4 points), every case above
# 0.28 gained (9-22); between lay a soft camera (+8) and a warm lamp and unseen blood-cells fields (-1 to -2).
ADVICE_LAYER = "top_bn"
NOT_NEEDED_UP_TO = 0.20
ADVISED_ABOVE = 0.28
CHECK_CELLS = 300


@dataclass(frozen=True)
class AdaptationReport:
    """What adapted the model, saved beside it as ``<model>.adapt.json``."""

    source_model: str
    source_sha256: str
    cells_from: str  # the folders, or the web page's live session or uploads
    images_found: int
    images_read: int  # files are read in a seeded random order until max_cells cells are found
    unreadable: list[str]
    without_whole_cell: int
    cells: int
    layers: list[str]
    # The training lab's folders the layers were first rebased on (``--training-data``); empty: the
    # model already carried its training lab's statistics (``hv train`` stores them) or was not rebased.
    rebased_on: list[str]
    training_cells: int
    # The class-balanced feature_shift of (at most CHECK_CELLS of) the cells before adapting, and
    # the advice it gave (``ShiftCheck.advice``).
    feature_shift: dict[str, float]
    advice: str
    date: str
    # The head retrained on labelled cells after adapting (``training.lab_tuning``): their folders and the
    # ``TuningReport``; empty when no labelled cells were given.
    labelled_from: list[str] = field(default_factory=list)
    labelled: dict | None = None
    # The head retrained on the model's own surest calls over the cells after adapting
    # (``training.self_training``, ``hv adapt --self-train``): the ``SelfTrainingReport``; None when not asked.
    self_trained: dict | None = None


@dataclass(frozen=True)
class ShiftCheck:
    """How unlike the training labs' cells some cells look to a model, and whether adapting it is advised."""

    cells: int
    feature_shift: dict[str, float]  # per layer (``feature_shift``)

    @property
    def advice(self) -> str:
        """One of "not needed", "unclear" or "advised"."""
        value = self.feature_shift[ADVICE_LAYER]
        return "not needed" if value <= NOT_NEEDED_UP_TO else "advised" if value > ADVISED_ABOVE else "unclear"

    def describe(self) -> str:
        value = self.feature_shift[ADVICE_LAYER]
        where = (f"{self.cells} cells: their features lie {value:.2f} standard deviations from the training labs' "
                 f"({ADVICE_LAYER}")
        if self.advice == "advised":
            return f"{where}; above {ADVISED_ABOVE}): unlike the cells the model learnt from, so adapting is advised"
        if self.advice == "not needed":
            return (f"{where}; {NOT_NEEDED_UP_TO} or less): like the cells the model learnt from, so adapting is "
                    "not needed (on such cells it gained nothing and cost up to 4 points in validation)")
        return (f"{where}; between {NOT_NEEDED_UP_TO} and {ADVISED_ABOVE}): somewhat unlike the cells the model "
                "learnt from; here adapting has gone both ways in validation (+8 points for a soft camera, -1 to -2 "
                "for a warm lamp), so compare both models on labelled cells of yours (hv evaluate)")


def image_files(folders: Sequence[str | Path]) -> list[Path]:
    """Every image file under the folders (recursively, sorted); a missing folder is an error that names it."""
    files: list[Path] = []
    for folder in map(Path, folders):
        if not folder.is_dir():
            raise DataError(f"{folder}: not a folder; pass folders of images from the lab to adapt to")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


def whole_cell_crops(image_rgb: np.ndarray, config: Config) -> list[np.ndarray]:
    """The crops of the located white cells whose box does not touch the image border.

    These are the crops the classifier sees: the same locator, scale and crop as training
    and the stream; a cell whose box touches the border is left out, since its crop would be
    part of a cell padded by the fill (the stream also keeps an ``edge_margin_frac`` margin).
    """
    height, width = image_rgb.shape[:2]
    diameter = cell_diameter_px(image_rgb, config.locator)
    boxes = locate_cells(image_rgb, config.locator, diameter)
    inside = (boxes[:, 0] > 1) & (boxes[:, 1] > 1) & (boxes[:, 2] < width - 1) & (boxes[:, 3] < height - 1)
    return [crop_cell(image_rgb, box, config.locator, config.model.image_size, diameter) for box in boxes[inside]]


def collect_crops(files: Sequence[Path], config: Config, max_cells: int) -> tuple[np.ndarray, list[str], int, int]:
    """Crops of up to ``max_cells`` whole cells, files in a seeded random order.

    Returns (crops, unreadable files, images without a whole cell, images read).
    """
    order = np.random.default_rng(0).permutation(len(files))
    crops: list[np.ndarray] = []
    unreadable: list[str] = []
    empty = done = 0
    for done, index in enumerate(order, 1):
        try:
            image = read_image_rgb(str(files[index]))
        except ImageReadError as exc:
            log.warning("skipped %s", exc)
            unreadable.append(str(files[index]))
            continue
        found = whole_cell_crops(image, config)
        empty += not found
        crops += found
        if done % 100 == 0:
            log.info("%d images read, %d cells", done, len(crops))
        if len(crops) >= max_cells:
            break
    stacked = np.stack(crops[:max_cells]) if crops else np.zeros((0, 1, 1, 3), np.uint8)
    return stacked, unreadable, empty, done


def training_lab_crops(split: Split, config: Config, max_cells: int = 1000, seed: int = 0) -> np.ndarray:
    """The crops the model was trained on, un-augmented: at most ``max_cells``, the same number per group.

    Training batches drew every (source, class) group at the same rate, so the statistics of
    the training lab are those of a balanced draw, not of the folders' own class mix. Each
    image gives the crop training used (``field_to_model_input``); unreadable files are skipped.
    """
    groups = np.array(split.groups())
    names = sorted(set(groups))
    rng = np.random.default_rng(seed)
    per_group = max(1, max_cells // len(names))
    picked = sorted(i for name in names for i in rng.permutation(np.flatnonzero(groups == name))[:per_group])
    crops = []
    for index in picked:
        try:
            crops.append(field_to_model_input(read_image_rgb(split.paths[index]), config)[0])
        except ImageReadError as exc:
            log.warning("skipped %s", exc)
    if not crops:
        raise DataError("no readable image in the training data to take its statistics from")
    return np.stack(crops)


def _all_normalisation_layers(model: keras.Model) -> Iterator[tuple[keras.Model, keras.layers.Layer]]:
    """Every BatchNormalization layer, input side first, with the model (itself or a nested one) that holds it."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            yield model, layer
        elif isinstance(layer, keras.Model):
            yield from _all_normalisation_layers(layer)


def normalisation_layer_names(model: keras.Model) -> list[str]:
    """The names of every BatchNormalization layer, input side first."""
    return [layer.name for _, layer in _all_normalisation_layers(model)]


def _normalisation_layers(model: keras.Model, names: Sequence[str]) -> list[tuple[keras.Model, keras.layers.Layer]]:
    """Each named BatchNormalization layer, input side first, with the model (itself or a nested one) holding it."""
    every = list(_all_normalisation_layers(model))
    missing = sorted(set(names) - {layer.name for _, layer in every})
    if missing:
        raise ModelLoadError(f"the model has no BatchNormalization layer named {', '.join(missing)}")
    return [(container, layer) for container, layer in every if layer.name in names]


def _batches(crops_rgb: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(crops_rgb), size):
        yield to_model_batch(crops_rgb[start:start + size])


def _input_moments(model: keras.Model, container: keras.Model, layer: keras.layers.Layer, crops: np.ndarray,
                   batch_size: int, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and variance of ``layer``'s input over every position of every crop (exact, float64).

    ``weights`` (one per crop, any scale) weigh the crops; without them each counts once.
    """
    if container is not model and container.inputs[0].shape[1:] != model.inputs[0].shape[1:]:
        raise ModelLoadError(f"{layer.name}: its nested model does not read the classifier's input")
    probe = keras.Model(container.inputs[0], layer.input)
    weights = np.ones(len(crops)) if weights is None else np.asarray(weights, np.float64)
    total = total_sq = None
    count = 0.0
    for start, batch in zip(range(0, len(crops), batch_size), _batches(crops, batch_size)):
        values = np.asarray(probe(batch, training=False), np.float64)
        values = values.reshape(len(values), -1, values.shape[-1])  # crop, position, channel
        weight = weights[start:start + len(values), None, None]
        batch_total, batch_sq = (weight * values).sum((0, 1)), (weight * values ** 2).sum((0, 1))
        total = batch_total if total is None else total + batch_total
        total_sq = batch_sq if total_sq is None else total_sq + batch_sq
        count += float(weight.sum()) * values.shape[1]
    mean = total / count
    return mean, np.maximum(total_sq / count - mean ** 2, 0.0)


def class_balancing_weights(model: keras.Model, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """One weight per crop that gives each class the model calls the crops the same total weight.

    A smear is mostly neutrophils, while the statistics ``hv train`` stores come from cells drawn
    evenly from each class; features that tell classes apart then differ in mean for the mix alone.
    """
    called = np.concatenate([np.asarray(model(batch, training=False)).argmax(1)
                             for batch in _batches(crops, batch_size)])
    counts = np.bincount(called)
    return 1.0 / counts[called]


def reestimate_statistics(model: keras.Model, crops: np.ndarray, layers: Sequence[str] = DEFAULT_LAYERS,
                          batch_size: int = 64, weights: np.ndarray | None = None) -> None:
    """Set each named layer's moving mean and variance to those of its inputs over ``crops``, in place.

    Exact statistics over all crops and positions (not a running average), layer after
    layer from the input side, so a later layer sees the earlier ones already adapted. The
    nested model holding a layer must take the model's own input (true of our classifiers,
    whose backbone reads the image). ``weights`` (one per crop) weigh the crops, e.g.
    ``class_balancing_weights``.
    """
    for container, layer in _normalisation_layers(model, layers):
        mean, variance = _input_moments(model, container, layer, crops, batch_size, weights)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))


def feature_shift(model: keras.Model, crops: np.ndarray, layers: Sequence[str] = DEFAULT_LAYERS,
                  batch_size: int = 64, *, balanced: bool = False, one_pass: bool = True) -> dict[str, float]:
    """How far ``crops``' features lie from the statistics each named layer holds, per layer.

    The mean over channels of |mean_crops - moving_mean| / sqrt(moving_variance + eps): the
    shift of the channel means in the stored standard deviations; for an average of runs, the
    mean of its runs' (until 2026-12-06 the last run's alone). ``hv train`` stores the
    training labs' statistics in these layers (``rebase_statistics``), so this says how unlike
    the training labs' cells a lab's cells look to the model, with no label needed.
    ``balanced`` weighs the crops so each class the model calls them counts alike
    (``class_balancing_weights``), as in the stored statistics; then ``one_pass`` takes the
    calls and the layers' inputs from one backbone pass per run where the model allows
    (``_balanced_input_means``; False: a pass per layer, the same figures).
    """
    means = _balanced_input_means(model, crops, layers, batch_size) if balanced and one_pass else None
    if means is None:  # one pass per layer (and one for the class calls)
        weights = class_balancing_weights(model, crops, batch_size) if balanced else None
        means = [(layer, _input_moments(model, container, layer, crops, batch_size, weights)[0])
                 for container, layer in _normalisation_layers(model, layers)]
    shifts = {}  # per layer name: each run's (an average's runs share their layers' names)
    for layer, mean in means:
        stored_std = np.sqrt(np.asarray(layer.moving_variance, np.float64) + layer.epsilon)
        shift = float(np.mean(np.abs(mean - np.asarray(layer.moving_mean, np.float64)) / stored_std))
        shifts.setdefault(layer.name, []).append(shift)
    return {name: float(np.mean(values)) for name, values in shifts.items()}


def _balanced_input_means(model: keras.Model, crops: np.ndarray, layers: Sequence[str],
                          batch_size: int) -> list[tuple[keras.layers.Layer, np.ndarray]] | None:
    """``feature_shift``'s class-balanced input means of each named layer, from one backbone pass per run.

    The class calls that weigh the crops and the layers' inputs come from the same pass (the
    head read from the backbone's output), instead of a pass of the whole model for the calls
    and one per layer: the check before adapting takes about half the time. None for a
    model not laid out as ``hv.model.build_model``'s (each run a backbone, then
    avg_pool -> dense -> pred), which takes the pass-per-layer way.
    """
    runs = []
    try:
        for member in member_models(model):
            backbone = member.get_layer(BACKBONE_LAYER)
            if backbone.inputs[0].shape[1:] != model.inputs[0].shape[1:]:
                return None  # something stands between the image and the backbone
            head = [member.get_layer(name) for name in (FEATURE_LAYER, *HEAD_LAYERS)]
            named = [layer for _, layer in _all_normalisation_layers(backbone) if layer.name in layers]
            runs.append((keras.Model(backbone.inputs[0], [layer.input for layer in named] + [backbone.output]),
                         head, named))
    except ValueError:
        return None
    if sorted({layer.name for _, _, named in runs for layer in named}) != sorted(set(layers)):
        return None
    sums, probabilities = [], []  # per run: per layer (per-crop sums over positions, positions); (n, 5)
    for probe, head, named in runs:
        layer_sums, run_probabilities = [[] for _ in named], []
        for batch in _batches(crops, batch_size):
            *inputs, features = probe(batch, training=False)
            for k, values in enumerate(inputs):
                values = np.asarray(values, np.float64)
                layer_sums[k].append((values.reshape(len(values), -1, values.shape[-1]).sum(1),
                                      int(np.prod(values.shape[1:-1]))))
            for layer in head:
                features = layer(features)
            run_probabilities.append(np.asarray(features, np.float64))
        sums.append(layer_sums)
        probabilities.append(np.concatenate(run_probabilities))
    called = np.mean(probabilities, axis=0).argmax(1)
    weights = 1.0 / np.bincount(called)[called]  # class_balancing_weights, from the same pass
    means = []
    for (_, _, named), layer_sums in zip(runs, sums):
        for layer, batches in zip(named, layer_sums):
            per_crop = np.concatenate([total for total, _ in batches])
            positions = batches[0][1]
            means.append((layer, (weights[:, None] * per_crop).sum(0) / (weights.sum() * positions)))
    return means


def rebase_statistics(model: keras.Model, crops: np.ndarray, layers: Sequence[str] = DEFAULT_LAYERS,
                      batch_size: int = 64) -> None:
    """Store the training lab's statistics in each named layer without changing what the model computes.

    Our backbones' BatchNorm layers keep ImageNet statistics through training, so the head
    learned features normalised by ImageNet's mean and variance, not standardised ones.
    Re-estimating such a layer on another lab would standardise that lab's features while the
    training lab's never were. Here the moving mean and variance become those of ``crops``
    (the training lab's cells) and the scale and offset are changed to compensate, exactly:

        gamma' = gamma * sqrt(var_s + eps) / sqrt(var_0 + eps)
        beta'  = beta + gamma * (mean_s - mean_0) / sqrt(var_0 + eps)

    so that gamma' (x - mean_s) / sqrt(var_s + eps) + beta' = gamma (x - mean_0) / sqrt(var_0 + eps) + beta.
    After this, ``reestimate_statistics`` on another lab gives that lab's features the mean
    and variance the training lab's features had (moment matching), not zero and one.
    """
    for container, layer in _normalisation_layers(model, layers):
        if layer.gamma is None or layer.beta is None:
            raise ModelLoadError(f"{layer.name}: a BatchNormalization layer without scale and offset cannot be rebased")
        mean, variance = _input_moments(model, container, layer, crops, batch_size)
        old_mean = np.asarray(layer.moving_mean, np.float64)
        old_std = np.sqrt(np.asarray(layer.moving_variance, np.float64) + layer.epsilon)
        gamma = np.asarray(layer.gamma, np.float64)
        layer.beta.assign((np.asarray(layer.beta, np.float64) + gamma * (mean - old_mean) / old_std).astype(np.float32))
        layer.gamma.assign((gamma * np.sqrt(variance + layer.epsilon) / old_std).astype(np.float32))
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(variance.astype(np.float32))


def check_cells(model: keras.Model, crops: np.ndarray, *, one_pass: bool = True) -> ShiftCheck:
    """``ShiftCheck`` of the first ``CHECK_CELLS`` crops under a model that holds its training labs' statistics.

    ``hv train``'s models do. Class-balanced (``feature_shift``): a smear of mostly neutrophils
    is not a shift of the microscope. ``one_pass``: as ``feature_shift``'s.
    """
    crops = crops[:CHECK_CELLS]
    return ShiftCheck(len(crops), feature_shift(model, crops, DEFAULT_LAYERS, balanced=True, one_pass=one_pass))


def adapted_model(model_path: Path, crops: np.ndarray, layers: Sequence[str] = DEFAULT_LAYERS,
                  training_crops: np.ndarray | None = None) -> tuple[keras.Model, ShiftCheck]:
    """The model at ``model_path`` with ``layers`` re-estimated on ``crops`` (the file is not changed).

    With ``training_crops`` (the training lab's cells) the layers are first rebased on them
    (``rebase_statistics``), for a model that does not carry its training lab's statistics
    yet: one trained before ``hv train`` stored them. Also returns the crops' ``ShiftCheck``
    before re-estimating.
    """
    model = KerasClassifier(model_path).model
    if training_crops is not None:
        rebase_statistics(model, training_crops, layers)
    check = check_cells(model, crops)
    reestimate_statistics(model, crops, layers)
    return model, check


def save_adapted(model: keras.Model, out_path: Path, report: AdaptationReport) -> None:
    """Write the adapted model and, beside it, its report (``<model>.adapt.json``)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.stem + ".partial.keras")  # never a half-written model under the name
    model.save(partial)
    partial.replace(out_path)
    out_path.with_suffix(".adapt.json").write_text(json.dumps(asdict(report), indent=2) + "\n")


def check_model_paths(model_path: Path, out_path: Path) -> None:
    """Refuse what adapting cannot do: a non-Keras model or output, or overwriting the model itself."""
    if out_path.suffix != ".keras":
        raise DataError(f"{out_path}: the adapted model is written as a .keras file; give a name ending in .keras")
    if model_path.suffix != ".keras":
        raise DataError(f"{model_path}: adapting needs the .keras model (an app package is adapted by exporting "
                        "the adapted .keras model again)")
    if out_path.resolve() == model_path.resolve():
        raise DataError(f"{out_path}: would overwrite the model being adapted; choose another name")


def lab_crops(folders: Sequence[str | Path], config: Config, max_cells: int,
              min_cells: int) -> tuple[np.ndarray, list[str], int, int, int]:
    """The whole located cells of the folders' images, at most ``max_cells``.

    Returns (crops, unreadable files, images without a whole cell, images read, images found).

    Raises:
        DataError: no image file under the folders, or fewer than ``min_cells`` cells found.
    """
    files = image_files(folders)
    if not files:
        raise DataError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {', '.join(map(str, folders))}")
    crops, unreadable, empty, read = collect_crops(files, config, max_cells)
    if len(crops) < min_cells:
        raise DataError(f"{len(crops)} whole white cells found in {len(files)} images under "
                        f"{', '.join(map(str, folders))}; at least {min_cells} are needed: add more fields")
    return crops, unreadable, empty, read, len(files)


def check(model_path: Path, folders: Sequence[str | Path], config: Config, *, max_cells: int = 1000,
          min_cells: int = MIN_CELLS) -> ShiftCheck:
    """How unlike the training labs' cells the folders' cells look to the model, and the advice that gives."""
    if model_path.suffix != ".keras":
        raise DataError(f"{model_path}: the check needs the .keras model (an app package holds no statistics)")
    crops = lab_crops(folders, config, min(max_cells, CHECK_CELLS), min_cells)[0]  # the check reads no more
    return check_cells(KerasClassifier(model_path).model, crops)


def adapt(model_path: Path, folders: Sequence[str | Path], config: Config, out_path: Path, *,
          layers: Sequence[str] = DEFAULT_LAYERS, max_cells: int = 1000, min_cells: int = MIN_CELLS,
          training_data: Sequence[str] = (), labelled: Sequence[str] = (),
          self_train: bool = False) -> AdaptationReport:
    """Write ``out_path`` (.keras): the model with ``layers`` re-estimated on the folders' located cells.

    ``training_data`` (the class folders the model was trained on) rebases the layers first
    (``adapted_model``). ``labelled`` (class folders of this lab's cells: a Review page's
    corrections, say) then retrains the head on them (``training.lab_tuning``); ``self_train``
    instead retrains it on the model's own surest calls over the cells (``training.self_training``).
    """
    check_model_paths(model_path, out_path)
    if self_train and labelled:
        raise DataError("give --labelled or --self-train, not both: the two together were never measured")
    if max_cells < min_cells:
        raise DataError(f"--max-cells {max_cells} is below the {min_cells} cells adapting needs")
    training_split = discover_sources(list(training_data))[0] if training_data else None  # bad folders stop here
    labelled_crops = labelled_labels = None
    if labelled:  # read before the long part: a folder too thin to tune on stops here
        labelled_crops, labelled_labels, _ = labelled_cells(labelled, config)
    crops, unreadable, empty, read, found = lab_crops(folders, config, max_cells, min_cells)
    training_crops = training_lab_crops(training_split, config, max_cells) if training_split is not None else None
    model, before = adapted_model(model_path, crops, layers, training_crops)
    tuning = (tune_on_labelled(model, labelled_crops, labelled_labels, anchor_crops=crops,
                               learnt_other=learnt_other(model_path)) if labelled else None)
    self_trained = None
    if self_train:
        try:
            self_trained = tune_on_own_calls(model, crops, learnt_other=learnt_other(model_path))
        except ValueError as exc:
            raise DataError(f"{', '.join(map(str, folders))}: {exc}; adapt without --self-train") from exc
    report = AdaptationReport(
        source_model=str(model_path), source_sha256=file_sha256(model_path),
        cells_from="folders: " + ", ".join(map(str, folders)),
        images_found=found, images_read=read, unreadable=unreadable, without_whole_cell=empty,
        cells=len(crops), layers=list(layers), rebased_on=list(training_data),
        training_cells=0 if training_crops is None else len(training_crops),
        feature_shift=before.feature_shift, advice=before.advice,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        labelled_from=list(labelled), labelled=None if tuning is None else asdict(tuning),
        self_trained=None if self_trained is None else asdict(self_trained))
    save_adapted(model, out_path, report)
    return report
