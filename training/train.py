"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune its top.

The reading order follows the work, as in the keras-io fine-tuning example: data, split,
augmentation, model, phase 1, phase 2, save. The recipe is fixed (epochs and rates come
from the config): the model kept is the one after the last epoch, never one picked by a
test score. Validation holds out whole field ids and is only watched: on blood-cells/TRAIN
the same original appears under several ids, so it reads far above TEST.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from hv.classifier import KerasClassifier
from hv.config import Config, PhaseConfig
from hv.labels import OTHER_ID, OUTPUT_NAMES
from hv.model import build_model, unfreeze_top_layers
from training.augment import build_augmenter
from training.data import DataReport, Split, discover_sources, load_originals, split_by_field
from training.distribute import fit_multi_worker, is_multi_worker, place
from training.evaluate import evaluate_split
from training.frozen_features import compute_features, feature_dataset, split_model
from training.heldout import TRAINED_CELLS_KEY, trained_cells
from training.lab_adaptation import DEFAULT_LAYERS, rebase_statistics, training_lab_crops
from training.pipeline import FieldLoader, balanced_batches, batch_crops, load_crops
from training.plots import plot_history

log = logging.getLogger(__name__)


def _compile(model: keras.Model, phase: PhaseConfig, config: Config) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(phase.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.train.label_smoothing),
        metrics=["accuracy"],
    )


class FullModelCheckpoint(keras.callbacks.Callback):
    """Save the full model (not the trainer that fit() sees): when validation loss improves, or every epoch.

    The file name (not the folders, whose names may hold braces) may hold ``{epoch}``, 1-based
    as Keras' ``ModelCheckpoint`` formats it.
    """

    def __init__(self, model_to_save: keras.Model, path: Path, save_best_only: bool = True):
        super().__init__()
        self._full_model, self._path, self._best = model_to_save, path, float("inf")
        self._save_best_only = save_best_only

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("val_loss")
        if self._save_best_only:
            if loss is None or loss >= self._best:
                return
            self._best = loss
        self._full_model.save(self._path.with_name(self._path.name.format(epoch=epoch + 1)))


def _callbacks(run_dir: Path, model: keras.Model, config: Config) -> list[keras.callbacks.Callback]:
    checkpoint_cb = FullModelCheckpoint(model, run_dir / "best_val.keras")
    csv_logger_cb = keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True)
    callbacks = [checkpoint_cb, csv_logger_cb]
    if config.train.keep_epoch_models:  # the epoch count is then chosen on held-out data (hv evaluate --held-out)
        callbacks.append(FullModelCheckpoint(model, run_dir / "epoch_{epoch:02d}.keras", save_best_only=False))
    if config.train.early_stopping_patience:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.train.early_stopping_patience))
    return callbacks


def _fit_phases(model, trainer, train_ds, val_ds, run_dir: Path, config: Config) -> tuple[dict, list[int]]:
    """Phase 1 (head only) then phase 2 (top layers unfrozen, BatchNorm frozen, low rate)."""
    history: dict[str, list[float]] = {}
    starts = []
    phases = ((config.train.phase1, 0), (config.train.phase2, config.train.phase2.unfreeze_layers))
    for number, (phase, unfreeze) in enumerate(phases, start=1):
        if phase.epochs == 0:
            continue
        if unfreeze:
            opened = unfreeze_top_layers(model, unfreeze)
            log.info("phase %d: unfroze %d weighted layers: %s", number, len(opened), ", ".join(opened))
        starts.append(len(history.get("loss", [])))
        log.info("phase %d: %d epochs at learning rate %g", number, phase.epochs, phase.learning_rate)
        strategy = tf.distribute.get_strategy()  # the one whose scope train() entered
        if is_multi_worker(strategy):
            if val_ds is not None:
                log.info("several workers: validation is not watched during training")
            if config.train.keep_epoch_models:
                log.warning("several workers: no epoch_NN.keras is saved (train on one machine to choose epochs)")
            phase_history = fit_multi_worker(strategy, trainer, train_ds, epochs=phase.epochs,
                                             initial_epoch=starts[-1], learning_rate=phase.learning_rate,
                                             label_smoothing=config.train.label_smoothing,
                                             global_batch=config.train.batch_size)
            _append_history_csv(run_dir / "history.csv", phase_history, starts[-1])
            for key, values in phase_history.items():
                history.setdefault(key, []).extend(values)
            continue
        _compile(trainer, phase, config)
        result = trainer.fit(
            train_ds,
            validation_data=val_ds,
            epochs=starts[-1] + phase.epochs,
            initial_epoch=starts[-1],
            shuffle=False,
            callbacks=_callbacks(run_dir, model, config),
            verbose=1,
        )
        for key, values in result.history.items():
            history.setdefault(key, []).extend(values)
    return history, starts


def _append_history_csv(path: Path, history: dict[str, list[float]], first_epoch: int) -> None:
    """The rows CSVLogger writes (epoch, then the metrics in name order), for the multi-worker loop."""
    keys = sorted(history)
    new = not path.exists()
    with path.open("a") as f:
        if new:
            f.write(",".join(["epoch", *keys]) + "\n")
        for i in range(len(history[keys[0]])):
            f.write(",".join([str(first_epoch + i), *(repr(history[k][i]) for k in keys)]) + "\n")


def _store_training_statistics(model: keras.Model, best_val: Path, split: Split, config: Config) -> None:
    """Rebase the BatchNorm layers hv adapt re-estimates on the training crops, in both saved models.

    Their answers do not change. The backbone's BatchNorm layers keep ImageNet statistics
    while training; storing the training lab's own statistics in them lets ``hv adapt`` later
    give another lab's features the mean and variance this lab's had (``training.lab_adaptation``).
    """
    crops = training_lab_crops(split, config, seed=config.train.seed)
    rebase_statistics(model, crops, DEFAULT_LAYERS)
    if best_val.exists():
        checkpoint = KerasClassifier(best_val).model
        rebase_statistics(checkpoint, crops, DEFAULT_LAYERS)
        checkpoint.save(best_val)
    log.info("%s rebased on %d training crops: the training lab's statistics, for hv adapt",
             ", ".join(DEFAULT_LAYERS), len(crops))


def train(config: Config, run_dir: Path) -> Path:
    """Train a model as configured and write a run folder.

    The folder holds ``model.keras`` (after the last epoch), ``best_val.keras`` (lowest
    validation loss), ``config.json`` (with the cells of each output it trained on,
    ``trained_cells``), ``history.csv``, ``curves.png`` and
    ``data_report.json``; with no test folder configured also ``holdout.txt`` and
    ``eval_holdout/`` (metrics on the held-out fields). It is written under a temporary
    name and renamed when complete.

    Returns:
        The run folder.
    """
    keras.utils.set_random_seed(config.train.seed)
    started = time.monotonic()
    data, reports = discover_sources(config.data.train_dirs)  # bad data stops the run before it writes anything
    originals = load_originals(config.data.original_groups)
    placement = place(config.train.strategy, config.train.mixed_precision)
    final_dir = run_dir
    if not placement.is_chief:  # every worker saves (a collective step); only the chief's folder is kept
        run_dir = Path(tempfile.mkdtemp(prefix="hv-worker-")) / run_dir.name
    partial = run_dir.with_name(run_dir.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    holdout = None
    if not config.data.test_dirs:
        data, holdout = split_by_field(data, config.data.test_fraction, config.split_seed + 1, originals)
        (partial / "holdout.txt").write_text("".join(f"{p}\t{y}\n" for p, y in zip(holdout.paths, holdout.labels)))
        log.info("no test folders: %d images of the training sources held out as the test set (whole fields)",
                 len(holdout))
    train_split, val_split = split_by_field(data, config.data.val_fraction, config.split_seed, originals,
                                            config.data.fold)
    # The config, and how many cells of each output it trains on: whether it learnt "other" decides how
    # labelled cells of a new lab retune it (training.lab_tuning), wherever the model is taken later.
    saved = dataclasses.asdict(config) | {TRAINED_CELLS_KEY: trained_cells(train_split.labels)}
    (partial / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    if not saved[TRAINED_CELLS_KEY][OUTPUT_NAMES[OTHER_ID]]:
        log.warning('no training image of cells outside the four classes (a source like pbc/OTHER#train): the model '
                    'will give every cell one of the four labels and never flag one "other"')
    # The images it never trained on, listed: validating this model later needs no code of today.
    (partial / "validation.txt").write_text("".join(f"{p}\t{y}\n" for p, y in zip(val_split.paths, val_split.labels)))
    held = f"fold {config.data.val_fold} of the" if config.data.fold else "whole"
    log.info("train %d images, validation %d images (%s original fields held out)", len(train_split),
             len(val_split), held)
    for source in sorted(set(train_split.source_of())):
        log.info("  source %s: %d training images", source, train_split.source_of().count(source))
    loader = FieldLoader(config)
    augmenter = build_augmenter(config.augment, config.train.seed)
    batch = config.train.batch_size
    # The model, its optimiser and its variables are made in the strategy's scope (Keras' distributed guide).
    with placement.strategy.scope():
        model = build_model(config.model)

        if config.train.cache_frozen_features:
            prefix, trainer = split_model(model, config.train.phase2.unfreeze_layers)
            crops = load_crops(train_split, config, loader)  # decoded and cropped once, for every view
            plain = batch_crops(crops, batch_size=batch)
            augmented = batch_crops(crops, batch_size=batch, augmenter=augmenter)
            views = [plain] + [augmented] * (config.train.views_per_image - 1)
            x_train, y_train = compute_features(prefix, views)
            groups = train_split.groups() * len(views)  # the views are stacked in the split's order
            train_ds = balanced_batches(feature_dataset(x_train, y_train), groups, batch, seed=config.train.seed)
            val_ds = None
            if len(val_split):
                val_crops = batch_crops(load_crops(val_split, config, loader, cache=False), batch_size=batch)
                val_ds = feature_dataset(*compute_features(prefix, [val_crops])).batch(batch)
        else:
            trainer = model
            train_crops = load_crops(train_split, config, loader)
            train_ds = balanced_batches(train_crops, train_split.groups(), batch, seed=config.train.seed,
                                        augmenter=augmenter)
            val_ds = batch_crops(load_crops(val_split, config, loader), batch_size=batch) if len(val_split) else None

        history, starts = _fit_phases(model, trainer, train_ds, val_ds, partial, config)
    _store_training_statistics(model, partial / "best_val.keras", train_split, config)
    model.save(partial / "model.keras")
    if holdout is not None and len(holdout) and placement.is_chief:
        holdout_report = DataReport(root=f"{', '.join(config.data.train_dirs)} (held-out fields)")
        evaluate_split(KerasClassifier(partial / "model.keras"), holdout, holdout_report, config,
                       partial / "eval_holdout")
    not_located = set(loader.not_located)
    for report in reports:
        report.not_located = sorted(p for p in not_located if p.startswith(report.root.partition("#")[0]))
    (partial / "data_report.json").write_text(json.dumps([r.__dict__ for r in reports], indent=2) + "\n")
    if history:
        plot_history(history, starts, partial / "curves.png")
    elapsed = time.monotonic() - started
    (partial / "timing.json").write_text(json.dumps({"train_wall_s": round(elapsed, 1)}) + "\n")
    log.info("training took %.0f s", elapsed)
    if not placement.is_chief:
        shutil.rmtree(run_dir.parent, ignore_errors=True)
        return final_dir
    if run_dir.exists():
        shutil.rmtree(run_dir)
    partial.rename(run_dir)
    return run_dir
