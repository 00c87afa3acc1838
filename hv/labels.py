"""The white-cell classes, in model output order. The one place they are named.

The four classes of the differential come first; a fifth output, "other", stands for any
cell that is none of them (basophils, immature granulocytes, erythroblasts, platelets,
blasts, smudge cells...): it is counted apart and never enters the differential. Models
trained before "other" existed have four outputs; ``hv.classifier`` gives them an "other"
column of zeros, so every caller sees NUM_OUTPUTS columns.
"""

from __future__ import annotations

CLASS_NAMES: tuple[str, ...] = ("eosinophil", "lymphocyte", "monocyte", "neutrophil")
NUM_CLASSES = len(CLASS_NAMES)

OTHER_NAME = "other"
OTHER_ID = NUM_CLASSES
OUTPUT_NAMES: tuple[str, ...] = (*CLASS_NAMES, OTHER_NAME)
NUM_OUTPUTS = len(OUTPUT_NAMES)

# Class folders that training takes as "other": cell types outside the four (as pbc/OTHER names them).
OTHER_CELL_TYPES: tuple[str, ...] = (
    OTHER_NAME, "basophil", "ig", "immature_granulocyte", "metamyelocyte", "myelocyte", "promyelocyte",
    "erythroblast", "platelet", "blast", "smudge",
)

# BGR drawing colour per output (same order), distinct on pink-purple smears.
CLASS_COLOURS_BGR: tuple[tuple[int, int, int], ...] = (
    (0, 140, 255), (255, 160, 0), (60, 200, 60), (200, 60, 200), (128, 128, 128))

# Stream label id for a cell that was classified, but below the confidence threshold.
UNIDENTIFIED_ID = -1
# Stream label id for a cell seen only cut by the frame edge so far: never classified from a cut view.
PARTIAL_ID = -2


def class_index(name: str, *, other: bool = False) -> int | None:
    """Output index of a class folder name, case-insensitive (``EOSINOPHIL`` -> 0); None if unknown.

    With ``other``, the names in OTHER_CELL_TYPES give OTHER_ID.
    """
    name = name.strip().lower()
    if name in CLASS_NAMES:
        return CLASS_NAMES.index(name)
    if other and name in OTHER_CELL_TYPES:
        return OTHER_ID
    return None
