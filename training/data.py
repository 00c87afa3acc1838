"""Data sets: discover class folders, report bad files, split by original field.

A data source is a folder of class folders (``eosinophil/`` or ``EOSINOPHIL/``). Folders
of cells outside the four (``hv.labels.OTHER_CELL_TYPES``: ``basophil/``, ``ig/``, ...)
are the "other" class. Every file that cannot be used is listed in the data report with
the reason; unknown class folders are reported. Several sources (labs) train together:
each image carries its source's name. A source written ``FOLDER#train`` or ``FOLDER#test``
takes a fixed part of its files (``hash_part``), for folders that come without a split.

Validation holds out whole original fields: for blood-cells/ the originals are read from
``training/originals/blood-cells.csv`` (found by matching the images' pixels,
``benchmarks/blood_cells_originals.py``), because the ``_<field>_`` id in a file name is
not the original (one original appears under several ids and in several class folders).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hv.labels import CLASS_NAMES, OTHER_ID, OUTPUT_NAMES, class_index
from hv.preprocess import IMAGE_SUFFIXES, NO_COLOUR
from hv.stain import has_no_colour

log = logging.getLogger(__name__)

# Kaggle's TRAIN/TEST files are named _<field id>_<augmentation>.jpeg: copies under one id
# share the first number within a class (one original can carry several ids).
_FIELD_PATTERN = re.compile(r"^_?(\d+)_\d+$")
# A field image must be large enough to hold a cell; smaller files are skipped, not cropped.
MIN_IMAGE_SIDE_PX = 16
# "#train" / "#test": the share of a source's files, by a hash of the file name, in its train part.
HASH_TRAIN_SHARE = 0.6
# The original field of every blood-cells/ TRAIN and TEST image, keyed by its last four path parts.
BUNDLED_ORIGINALS = Path(__file__).resolve().parent / "originals" / "blood-cells.csv"


class DataError(ValueError):
    """The data set cannot be used; the message says which folder and why."""


@dataclass
class DataReport:
    """What discovery found: usable counts and everything that was skipped, with reasons."""

    root: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)
    unknown_folders: list[str] = field(default_factory=list)
    not_located: list[str] = field(default_factory=list)

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")


@dataclass(frozen=True)
class Split:
    """Parallel lists of image paths, class ids and (with several sources) each image's source name."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.paths)

    def source_of(self) -> tuple[str, ...]:
        """The source name of every image ("" for a split made without sources)."""
        return self.sources or ("",) * len(self.paths)

    def groups(self) -> list[str]:
        """Each image's (source, class) group: training batches draw every group at its share."""
        return [f"{source}|{label}" for source, label in zip(self.source_of(), self.labels)]

    def select(self, keep) -> Split:
        """The images where the boolean sequence ``keep`` is true."""
        keep = list(keep)
        pick = [i for i, k in enumerate(keep) if k]
        return Split(tuple(self.paths[i] for i in pick), tuple(self.labels[i] for i in pick),
                     tuple(self.source_of()[i] for i in pick) if self.sources else ())

    @staticmethod
    def concat(splits: list[Split]) -> Split:
        return Split(sum((s.paths for s in splits), ()), sum((s.labels for s in splits), ()),
                     sum((s.source_of() for s in splits), ()))


def _check_image(path: Path) -> str | None:
    """Reason the file is unusable, or None. Decodes fully, so truncation is caught."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            colourless = has_no_colour(np.asarray(image.convert("RGB")))
    except Exception as exc:  # PIL raises many types for bad files; all mean "skip it"
        return f"unreadable image: {exc}"
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        return f"image too small ({width}x{height} px; a field must be at least {MIN_IMAGE_SIDE_PX} px each way)"
    return NO_COLOUR if colourless else None


def parse_source(spec: str | Path) -> tuple[Path, str | None]:
    """``FOLDER`` or ``FOLDER#train`` / ``FOLDER#test`` -> (folder, part or None)."""
    text = str(spec)
    folder, _, part = text.partition("#")
    if part and part not in ("train", "test"):
        raise DataError(f"data source {text!r}: after '#' expected 'train' or 'test', got {part!r}")
    return Path(folder), part or None


def source_name(spec: str | Path) -> str:
    """A short name for reports and packages: the folder's last two parts and its part (``pbc/OTHER#test``).

    A package travels to other machines and people; the exporting machine's layout says
    nothing there (and may say more than its owner wants).
    """
    folder, part = parse_source(spec)
    name = "/".join(folder.parts[-2:])
    return f"{name}#{part}" if part else name


def hash_part(path: str | Path) -> str:
    """"train" or "test": a fixed split by the file name alone, the same on every machine."""
    digest = hashlib.sha1(Path(path).name.encode()).digest()
    return "train" if int.from_bytes(digest[:4], "big") / 2**32 < HASH_TRAIN_SHARE else "test"


def discover(root: str | Path, workers: int = 8, *, any_other: bool = False,
             require_all: bool = True) -> tuple[Split, DataReport]:
    """Find the images of each class under ``root`` and check that each one decodes.

    Args:
        root: a folder of class folders, optionally ``#train`` / ``#test`` (see ``parse_source``).
        workers: threads that decode images.
        any_other: every class folder outside the four is "other" (evaluation); else only
            the names in ``hv.labels.OTHER_CELL_TYPES`` are, and other names are reported.
        require_all: each of the four classes must have images (a single training source);
            else a missing class is a warning (one of several sources).

    Raises:
        DataError: ``root`` is missing, or (``require_all``) a class has no usable image.
    """
    root, part = parse_source(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; set data.train_dirs / data.test_dirs or pass --data")
    report = DataReport(root=str(root) + (f"#{part}" if part else ""))
    candidates: list[tuple[Path, int]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        index = class_index(folder.name, other=True)
        if index is None and any_other:
            index = OTHER_ID
        if index is None:
            report.unknown_folders.append(str(folder))
            continue
        found = 0
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or (part and hash_part(path) != part):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                report.skipped.append({"path": str(path), "reason": "not an image file type"})
                continue
            candidates.append((path, index))
            found += 1
        if not found:
            log.warning("class folder %s holds no image files", folder)
    with ThreadPoolExecutor(workers) as pool:
        reasons = list(pool.map(lambda item: _check_image(item[0]), candidates))
    paths, labels = [], []
    for (path, index), reason in zip(candidates, reasons):
        if reason:
            report.skipped.append({"path": str(path), "reason": reason})
        else:
            paths.append(str(path))
            labels.append(index)
    counts = Counter(labels)
    report.counts = {name: counts.get(i, 0) for i, name in enumerate(OUTPUT_NAMES) if i < OTHER_ID or counts.get(i)}
    for path in report.skipped:
        log.warning("skipped %s: %s", path["path"], path["reason"])
    for folder in report.unknown_folders:
        log.warning("ignored folder %s: not one of %s (or a cell type outside them, such as basophil)",
                    folder, ", ".join(CLASS_NAMES))
    empty = [name for name in CLASS_NAMES if report.counts[name] == 0]
    if not paths or (empty and require_all):
        raise DataError(
            f"{report.root}: no usable images for class(es) {', '.join(empty) or ', '.join(OUTPUT_NAMES)}; expected "
            f"a sub-folder per class ({', '.join(CLASS_NAMES)}, any case, or cells outside them such as basophil) "
            "holding JPG/PNG images"
        )
    if len(empty) == len(CLASS_NAMES):
        log.info("data source %s holds only cells outside the four classes (\"other\")", report.root)
    elif empty:
        log.warning("data source %s has no images of %s", report.root, ", ".join(empty))
    return Split(tuple(paths), tuple(labels)), report


def discover_sources(specs: list[str] | tuple[str, ...], *, any_other: bool = False
                     ) -> tuple[Split, list[DataReport]]:
    """Discover several sources (labs) as one split whose images carry their source's name.

    With one source, each of the four classes must have images there; with several, a
    source may lack a class (a warning names it) but together they must cover all four.

    Raises:
        DataError: a folder is missing, a source has no usable image, or a class has none anywhere.
    """
    if not specs:
        raise DataError("no data source given; set data.train_dirs / data.test_dirs or pass --data")
    splits, reports = [], []
    for spec in specs:
        split, report = discover(spec, any_other=any_other, require_all=len(specs) == 1)
        splits.append(Split(split.paths, split.labels, (source_name(spec),) * len(split)))
        reports.append(report)
    data = Split.concat(splits)
    missing = [name for i, name in enumerate(CLASS_NAMES) if i not in set(data.labels)]
    if missing:
        raise DataError(f"no usable images of {', '.join(missing)} in any of {', '.join(map(str, specs))}")
    return data, reports


def load_originals(setting: str) -> dict[str, str]:
    """Original field of each image a grouping file lists, keyed by ``original_key``.

    ``setting`` is ``data.original_groups``: "bundled" (the shipped blood-cells/ grouping),
    "none" (field ids only) or a CSV path with ``path,group`` rows, ``path`` ending in
    ``<data set>/<part>/<class>/<file>``.

    Raises:
        DataError: the file is missing or is not such a CSV.
    """
    if setting == "none":
        return {}
    path = BUNDLED_ORIGINALS if setting == "bundled" else Path(setting)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"data.original_groups: cannot read {path} ({exc.strerror}); "
                        "give a CSV with path,group rows, \"bundled\" or \"none\"") from exc
    if rows and not {"path", "group"} <= set(rows[0]):
        raise DataError(f"data.original_groups: {path} has columns {sorted(rows[0])}; expected path,group")
    return {original_key(row["path"]): row["group"] for row in rows}


def original_key(path: str | Path) -> str:
    """An image's last four path parts (``blood-cells/TRAIN/EOSINOPHIL/_0_1169.jpeg``): the same on every machine."""
    return "/".join(Path(path).parts[-4:])


def field_group(path: str, label: int, source: str = "", originals: dict[str, str] | None = None) -> str:
    """The original field an image is a copy of, as far as it is known.

    An image listed in ``originals`` belongs to its original field, whatever its class
    folder (one original can sit in two). Otherwise: the field id the image carries in its
    name, ``_<field>_<copy>``, within its class; an image without one (one cell per
    image, as pbc/) is a group of its own, so such a source is split at random,
    stratified by class.
    """
    original = (originals or {}).get(original_key(path))
    if original is not None:
        return f"{source}:original:{original}"
    stem = Path(path).stem
    match = _FIELD_PATTERN.match(stem)
    return f"{source}:{label}:{match.group(1) if match else stem}"


def split_by_field(data: Split, val_fraction: float, seed: int, originals: dict[str, str] | None = None,
                   fold: tuple[int, int] | None = None) -> tuple[Split, Split]:
    """Hold out whole original fields (``field_group``), stratified by source and class.

    TRAIN holds dozens of augmented copies of each field; a split that puts copies of
    one cell on both sides reads ~99 % and means nothing. Field ids alone are not enough
    on blood-cells/TRAIN (every original appears under several ids), so pass its
    ``originals`` (``load_originals``); without them the split is a fit monitor only.
    A field whose copies sit in several class folders counts in the stratum of most
    of them. Without ``originals`` the split is the one earlier versions made, image
    for image, so a model trained then can still find the images it never saw.

    With ``fold = (I, K)`` the originals of each stratum are shuffled once (``seed``) and cut
    into K near-equal folds; fold I (1-based) is held out and ``val_fraction`` is not used. The
    K folds of one seed hold out every original exactly once.

    Returns:
        (train, validation); validation is empty when ``val_fraction`` is 0.
    """
    rng = np.random.default_rng(seed)
    groups = [field_group(p, y, s, originals) for p, y, s in zip(data.paths, data.labels, data.source_of())]
    members: dict[str, Counter] = {}
    for group, stratum in zip(groups, zip(data.source_of(), data.labels)):
        members.setdefault(group, Counter())[stratum] += 1
    stratum_of = {g: max(sorted(c), key=c.__getitem__) for g, c in members.items()}
    held_out: set[str] = set()
    for stratum in sorted(set(stratum_of.values())):
        stratum_groups = sorted(g for g, s in stratum_of.items() if s == stratum)
        if fold is not None:
            index, folds = fold
            held_out.update(np.array_split(rng.permutation(stratum_groups), folds)[index - 1].tolist())
            continue
        count = int(round(len(stratum_groups) * val_fraction))
        if count:
            held_out.update(rng.choice(stratum_groups, size=count, replace=False).tolist())
    pick = [g in held_out for g in groups]
    return data.select(not p for p in pick), data.select(pick)
