"""An average of runs: several trained models as one, their class probabilities averaged.

Two runs of one recipe place the eosinophil/neutrophil boundary on blood-cells differently,
and their mean is steadier than either (BENCHMARKS.md, "Averaging two runs"). ``hv average``
writes the average as a run folder, so every command that takes a run's model takes it:

- ``model.keras``: ``hv.model.average_models`` of the runs (one Keras model, one TFLite graph);
- ``config.json``: the first run's config; the runs must agree on what shapes their input
  (the locator and crop, the input size, the backbone), else the average is refused; its
  ``trained_cells`` are the runs' together;
- ``validation.txt``: the images that *every* run held out, the only ones no part of the
  average trained on: ``hv evaluate --held-out`` scores them and ``hv export`` chooses its
  variant on them. Runs trained with one ``--split-seed`` hold out the same originals, so
  this is their whole validation split; runs with their own splits share few; runs refit on
  every image (``data.val_fraction = 0``, the last step once a recipe is chosen) share none,
  and ``hv export`` then verifies its variants on training images;
- ``holdout.txt``: the runs' own test split, when they had no test folders (it must be the same);
- ``members.json``: each run's model file and sha256.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from hv.classifier import KerasClassifier, ModelLoadError, file_sha256
from hv.config import Config
from hv.model import average_models
from training.data import DataError, Split, original_key
from training.heldout import TRAINED_CELLS_KEY, model_split, saved_config

log = logging.getLogger(__name__)

# What shapes a model's input: runs that differ here classify different pictures of a cell.
_MUST_AGREE = (("locator", None), ("model", "image_size"), ("model", "backbone"), ("data", "input"))


def _agreeing_config(models: list[Path]) -> dict:
    """The first run's saved config, once every run's agrees on what shapes the input."""
    configs = []
    for path in models:
        if not path.is_file():  # before its config: "no config.json beside it" would mislead
            raise ModelLoadError(f"model file {path} does not exist")
        found = saved_config(path)
        if found is None:
            raise DataError(f"{path}: no config.json beside it; average the model.keras of hv train's run folders")
        configs.append(found[1])
    for section, key in _MUST_AGREE:
        values = [c[section] if key is None else c[section][key] for c in configs]
        for path, value in zip(models[1:], values[1:]):
            if value != values[0]:
                name = section if key is None else f"{section}.{key}"
                raise DataError(f"{path} and {models[0]} differ in {name} ({value!r} against {values[0]!r}): "
                                "they see cells differently and cannot be averaged")
    saved = dict(configs[0])
    if all(TRAINED_CELLS_KEY in c for c in configs):  # the cells of each output the runs trained on, together
        saved[TRAINED_CELLS_KEY] = {name: sum(c[TRAINED_CELLS_KEY].get(name, 0) for c in configs)
                                    for name in configs[0][TRAINED_CELLS_KEY]}
    return saved


def _held_out_by_all(splits: list[Split]) -> list[tuple[str, int]]:
    """(path, label) of the images every run held out, in the first run's order."""
    shared = set.intersection(*({original_key(p) for p in s.held_out.paths} for s in splits))
    first = splits[0].held_out
    return [(p, y) for p, y in zip(first.paths, first.labels) if original_key(p) in shared]


def _same_test_split(models: list[Path]) -> str | None:
    """The runs' ``holdout.txt`` (their own test split, without test folders), which must be one list."""
    listings = [path.parent / "holdout.txt" for path in models]
    present = [p.is_file() for p in listings]
    if not any(present):
        return None
    texts = [p.read_text() if p.is_file() else None for p in listings]
    if not all(present) or len(set(texts)) > 1:
        raise DataError("the runs held out different test images (holdout.txt): train them with one --split-seed")
    return texts[0]


def average_runs(models: list[Path], out_dir: Path, config: Config) -> dict:
    """Write the average of the runs at ``models`` to the run folder ``out_dir``; return its members.json.

    ``config``: today's config, for the training sources whose held-out images are listed
    (``training.heldout.model_split``).

    Raises:
        DataError: fewer than two runs, a run without its saved config, runs that see cells
            differently or hold out different test images, or an ``out_dir`` that already exists.
        hv.classifier.ModelLoadError: a model file is missing or unusable.
    """
    models = [Path(m) for m in models]
    if len(models) < 2:
        raise DataError("hv average needs two or more runs' model.keras")
    if len({m.resolve() for m in models}) < len(models):
        raise DataError("a run is named twice: averaging a run with itself changes nothing")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise DataError(f"{out_dir} exists: give a new folder for the average (nothing was written)")
    saved = _agreeing_config(models)
    test_split = _same_test_split(models)
    splits = [model_split(path, config) for path in models]
    held_out = _held_out_by_all(splits)
    members = [KerasClassifier(path).model for path in models]
    try:
        average = average_models(members)
    except ValueError as exc:
        raise DataError(f"cannot average {', '.join(map(str, models))}: {exc}") from exc
    description = {"members": [{"model": str(path.resolve()), "sha256": file_sha256(path)} for path in models],
                   "held_out_by_all": len(held_out)}
    partial = out_dir.with_name(out_dir.name + ".partial")  # never a half-written run folder under the name
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    average.save(partial / "model.keras")
    (partial / "config.json").write_text(json.dumps(saved, indent=2) + "\n")
    (partial / "validation.txt").write_text("".join(f"{p}\t{y}\n" for p, y in held_out))
    if test_split is not None:
        (partial / "holdout.txt").write_text(test_split)
    (partial / "members.json").write_text(json.dumps(description, indent=2) + "\n")
    partial.rename(out_dir)
    if not any(len(split.held_out) for split in splits):  # a final fit (data.val_fraction 0): nothing to warn of
        log.info("the runs held out nothing (each trained on every image): hv export verifies its variants on "
                 "training images")
    elif len(held_out) < 200:
        log.warning("only %d images were held out by every run: hv evaluate --held-out and hv export's choice of "
                    "variant rest on them; train runs to average with one --split-seed", len(held_out))
    return description
