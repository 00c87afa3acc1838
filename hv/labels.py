"""The four white-cell classes, in model output order. The one place they are named."""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
NUM_CLASSES = len(CLASS_NAMES)

# BGR drawing colour per class (same order), distinct on pink-purple smears.
CLASS_COLOURS_BGR: tuple[tuple[int, int, int], ...] = ((0, 140, 255), (255, 160, 0), (60, 200, 60), (200, 60, 200))

# Stream label id for a cell that was seen but is not classified (yet, or below threshold).
UNIDENTIFIED_ID = -1


def class_index(name: str) -> int | None:
    """Index of a class name, matched case-insensitively (``EOSINOPHIL`` -> 0); None if unknown."""
    try:
        return CLASS_NAMES.index(name.strip().lower())
    except ValueError:
        return None
