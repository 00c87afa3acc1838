"""Data sets: discover class folders, report bad files, split by field id, tf.data.

A data set is a folder of class folders (``eosinophil/`` or ``EOSINOPHIL/``). Every file
that cannot be used is listed in the data report with the reason; unknown class folders
are reported; a missing or empty class stops the run.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hv.labels import CLASS_NAMES, class_index

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
# Kaggle's TRAIN/TEST files are named _<field id>_<augmentation>.jpeg: copies under one id
# share the first number within a class (one original can carry several ids).
_FIELD_PATTERN = re.compile(r"^_?(\d+)_\d+$")


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
    """Parallel lists of image paths and class ids."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


def _check_image(path: Path) -> str | None:
    """Reason the file is unusable, or None. Decodes fully, so truncation is caught."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as image:
            image.load()
    except Exception as exc:  # PIL raises many types for bad files; all mean "skip it"
        return f"unreadable image: {exc}"
    return None


def discover(root: str | Path, workers: int = 8) -> tuple[Split, DataReport]:
    """Find the images of each class under ``root`` and check that each one decodes.

    Raises:
        DataError: ``root`` is missing, or a class has no usable image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist; set data.train_dir / data.test_dir or pass --data")
    report = DataReport(root=str(root))
    candidates: list[tuple[Path, int]] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        index = class_index(folder.name)
        if index is None:
            report.unknown_folders.append(str(folder))
            continue
        for path in sorted(folder.rglob("*")):
            if not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                report.skipped.append({"path": str(path), "reason": "not an image file type"})
                continue
            candidates.append((path, index))
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
    report.counts = {name: counts.get(i, 0) for i, name in enumerate(CLASS_NAMES)}
    for path in report.skipped:
        log.warning("skipped %s: %s", path["path"], path["reason"])
    for folder in report.unknown_folders:
        log.warning("ignored folder %s: not one of %s", folder, ", ".join(CLASS_NAMES))
    empty = [name for name, n in report.counts.items() if n == 0]
    if empty:
        raise DataError(
            f"{root}: no usable images for class(es) {', '.join(empty)}; expected a sub-folder per class "
            f"({', '.join(CLASS_NAMES)}, any case) holding JPG/PNG images"
        )
    return Split(tuple(paths), tuple(labels)), report


def field_group(path: str, label: int) -> str:
    """The field id an image carries in its name, ``_<field>_<copy>`` (its own name if none)."""
    stem = Path(path).stem
    match = _FIELD_PATTERN.match(stem)
    return f"{label}:{match.group(1)}" if match else f"{label}:{stem}"


def split_by_field(data: Split, val_fraction: float, seed: int) -> tuple[Split, Split]:
    """Hold out whole field ids, stratified by class.

    TRAIN holds dozens of augmented copies of each field; a random split would put copies
    of the same cell on both sides and report ~99 % validation accuracy that means nothing.
    Grouping by id is not enough on blood-cells/TRAIN either: measured, every field there
    also appears under another id (benchmarks/train_field_duplicates.py), so this split
    still reads ~99.7 %. It is a fit monitor, not a model-selection signal.

    Returns:
        (train, validation); validation is empty when ``val_fraction`` is 0.
    """
    rng = np.random.default_rng(seed)
    groups = [field_group(p, y) for p, y in zip(data.paths, data.labels)]
    held_out: set[str] = set()
    for label in range(len(CLASS_NAMES)):
        class_groups = sorted({g for g, y in zip(groups, data.labels) if y == label})
        count = int(round(len(class_groups) * val_fraction))
        if count:
            held_out.update(rng.choice(class_groups, size=count, replace=False).tolist())
    pick = np.array([g in held_out for g in groups])
    paths, labels = np.array(data.paths), np.array(data.labels)
    return (Split(tuple(paths[~pick]), tuple(int(v) for v in labels[~pick])),
            Split(tuple(paths[pick]), tuple(int(v) for v in labels[pick])))
