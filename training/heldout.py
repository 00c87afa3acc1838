"""The training images a saved model never saw, rebuilt from the config it was trained with.

``hv train`` saves its config beside the model (a run folder's ``config.json``; the bundle's
``models/<name>.config.json``), and since 2026-12-05 the list of the images it held out
(``validation.txt`` in the run folder), which is read as it is. Otherwise the seed,
``data.val_fraction`` (or ``data.val_fold``) and ``data.original_groups`` saved decide which
original fields it held out, so the split is rebuilt from them and not from today's config: a TFLite variant
chosen (``hv export``) or a benchmark scored on today's split would read images the model
trained on whenever the two differ. A model trained with the split by file-name ids
(before ``data.original_groups``), or with a grouping that missed some copies, held out
copies of blood-cells/ originals it trained on; those are dropped by today's bundled
grouping and counted apart.

The same files say which outputs a model's training held cells of (``trained_outputs``): a
model that never saw an "other" cell cannot flag one, and retuning it on a lab's labelled
cells must not pretend it can (``training.lab_tuning``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hv.config import Config, parse_fold
from hv.labels import OUTPUT_NAMES
from training.data import (
    DataError,
    DataReport,
    Split,
    discover_sources,
    load_originals,
    original_key,
    source_name,
    split_by_field,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSplit:
    """A model's training images, the ones it held out and never saw, and the held-out copies it did see."""

    trained_on: Split
    held_out: Split  # no image of an original field the model trained on
    leaked: Split  # held out by the training, but copies of originals it trained on: not for validation
    seed: int
    described: str  # where the split came from, for reports
    reports: list[DataReport]  # what discovery found in each source


def saved_config(model_path: str | Path) -> tuple[Path, dict] | None:
    """The config a model was trained with: ``<model>.config.json`` beside it, or its run folder's ``config.json``.

    Raises:
        DataError: the file exists but is not a saved config.
    """
    model_path = Path(model_path)
    for path in (model_path.with_suffix(".config.json"), model_path.parent / "config.json"):
        if path.is_file():
            try:
                saved = json.loads(path.read_text())
                saved["train"]["seed"], saved["data"]["val_fraction"]  # noqa: B018 (the keys the split needs)
            except (ValueError, KeyError, TypeError) as exc:
                raise DataError(f"{path}: not a config saved by hv train ({exc!r}); move it away from "
                                f"{model_path.name} or restore it from the run folder") from exc
            return path, saved
    return None


# Saved config key: the cells of each output (hv.labels.OUTPUT_NAMES) a run trained on, as hv train split them.
TRAINED_CELLS_KEY = "trained_cells"


def trained_cells(labels: Sequence[int]) -> dict[str, int]:
    """{output name: number of training cells} of a split's labels (output ids), every output named."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(OUTPUT_NAMES))
    return {name: int(n) for name, n in zip(OUTPUT_NAMES, counts)}


def trained_outputs(model_path: str | Path) -> set[str] | None:
    """The outputs (class names, "other") the training of the model at ``model_path`` held cells of.

    Read from what hv train and hv average leave beside a model: the saved config's
    ``trained_cells`` (since 2026-12-06), else the run folder's ``data_report.json`` (what the
    sources held, validation included), else an average's ``members.json`` (any run's outputs),
    else an adapted model's ``<model>.adapt.json`` (its source model's). None when nothing says:
    a model from elsewhere.
    """
    model_path = Path(model_path)
    found = saved_config(model_path)
    if found is not None and TRAINED_CELLS_KEY in found[1]:
        return {name for name, n in found[1][TRAINED_CELLS_KEY].items() if n}
    folder = model_path.parent
    try:
        if found is not None and found[0].name == "config.json" and (folder / "data_report.json").is_file():
            reports = json.loads((folder / "data_report.json").read_text())
            return {name for report in reports for name, n in report["counts"].items() if n}
        if found is not None and found[0].name == "config.json" and (folder / "members.json").is_file():
            members = [trained_outputs(member["model"])
                       for member in json.loads((folder / "members.json").read_text())["members"]]
            return None if None in members else set().union(*members)
        adapted = model_path.with_suffix(".adapt.json")
        if adapted.is_file():
            source = Path(json.loads(adapted.read_text())["source_model"])
            return trained_outputs(source) if source.resolve() != model_path.resolve() else None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s: what its training held cannot be read beside it (%r)", model_path, exc)
    return None


def model_split(model_path: str | Path, config: Config) -> ModelSplit:
    """The split ``hv train`` made for ``model_path``, over today's ``config.data.train_dirs``.

    Without a saved config (a model from elsewhere) today's config stands in, with a warning:
    that model may have trained on some of the images called held out.
    """
    data, reports = discover_sources(config.data.train_dirs)
    found = saved_config(model_path)
    listed = _listed_validation(model_path, found)
    notes = []  # what a report should know about the split, after where it came from
    if found is None:
        log.warning("%s: no config saved beside it; today's config decides its validation split, which may hold "
                    "images it trained on", model_path)
        seed, fraction, grouping = config.split_seed, config.data.val_fraction, config.data.original_groups
        fold = config.data.fold
        test_fraction = 0.0 if config.data.test_dirs else config.data.test_fraction
        origin = "the validation split of today's config (no config saved beside the model)"
    else:
        path, saved = found
        seed, fraction = saved["train"]["seed"], saved["data"]["val_fraction"]
        if saved["data"].get("split_seed", -1) >= 0:  # -1, or saved before the option: train.seed drew the split
            seed = saved["data"]["split_seed"]
        test_fraction = 0.0 if saved["data"].get("test_dirs", True) else saved["data"].get("test_fraction", 0.0)
        grouping = saved["data"].get("original_groups", "none")  # saved before the option: split by ids
        fold = parse_fold(saved["data"]["val_fold"]) if saved["data"].get("val_fold") else None
        if listed is not None:
            origin = f"the images the model's training held out (validation.txt, seed {seed}, {path.name})"
        else:
            held = f"fold {saved['data']['val_fold']}, " if fold else ""
            origin = f"the validation split the model's training held out ({held}seed {seed}, {path.name})"
        then = sorted(map(source_name, saved["data"].get("train_dirs", config.data.train_dirs)))
        now = sorted(map(source_name, config.data.train_dirs))
        if then != now:
            log.warning("%s trained on %s; today's config lists %s: the rebuilt split differs from its own",
                        model_path, ", ".join(then), ", ".join(now))
            notes.append(f"it trained on {', '.join(then)}, today's sources differ")
    if listed is not None:  # the exact list the training wrote: no rebuilding, whatever the grouping file is today
        pick = [original_key(p) in listed for p in data.paths]
        test = _listed(Path(model_path).parent / "holdout.txt")  # its own test split, when it had no test folders
        trained_on = data.select(not p and original_key(path) not in test for p, path in zip(pick, data.paths))
        held_out = data.select(pick)
        if len(held_out) < len(listed):
            notes.append(f"{len(listed) - len(held_out)} of those listed are not in today's sources")
    else:
        originals = load_originals(grouping)
        if test_fraction:  # as hv train does without test folders: its own test split first, then validation
            data, _ = split_by_field(data, test_fraction, seed + 1, originals)
        trained_on, held_out = split_by_field(data, fraction, seed, originals, fold)
    # Today's grouping of blood-cells/ may know copies the model's split did not.
    known = load_originals("bundled")
    seen = {known[k] for k in map(original_key, trained_on.paths) if k in known}
    copies = [known.get(original_key(p)) in seen for p in held_out.paths]
    leaked = held_out.select(copies)
    if len(leaked):
        notes.append(f"{len(leaked)} held-out copies of originals it trained on left out")
    described = "; ".join([origin, *notes])
    return ModelSplit(trained_on, held_out.select(not c for c in copies), leaked, seed, described, reports)


def _listed_validation(model_path: Path, found: tuple[Path, dict] | None) -> set[str] | None:
    """The ``original_key`` of every image in the run folder's ``validation.txt``, if the model sits in one."""
    listing = Path(model_path).parent / "validation.txt"
    if found is None or found[0].name != "config.json" or not listing.is_file():
        return None
    return _listed(listing)


def _listed(listing: Path) -> set[str]:
    """The ``original_key`` of every image a ``path<TAB>label`` list names (none if there is no such file)."""
    if not listing.is_file():
        return set()
    return {original_key(line.split("\t")[0]) for line in listing.read_text().splitlines() if line.strip()}


def held_out_sources(split: ModelSplit) -> list[tuple[str, Split, DataReport]]:
    """The held-out images source by source, as ``training.evaluate.evaluate_sources`` takes them."""
    sources = split.held_out.source_of()
    named = []
    for name in sorted(set(sources)):
        part = split.held_out.select(s == name for s in sources)
        counts = {OUTPUT_NAMES[y]: part.labels.count(y) for y in sorted(set(part.labels))}
        named.append((name, part, DataReport(root=name, counts=counts)))
    return named
