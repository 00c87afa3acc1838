"""Pascal VOC box files (the BCCD annotations): read, clean, compare by IoU."""

from __future__ import annotations

import csv
import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from hv.labels import class_index

log = logging.getLogger(__name__)


def read_voc_boxes(path: str | Path, name: str = "WBC") -> np.ndarray:
    """Boxes of one object class from a VOC XML file, cleaned.

    BCCD has a few odd files: exact duplicate boxes, coordinates past the image edge,
    zero-size boxes. Duplicates are dropped, boxes clipped to the image, degenerate ones
    skipped (with a log line), so the caller sees each object once.

    Returns:
        (n, 4) float32 ``[x1, y1, x2, y2]`` in image pixels.
    """
    root = ET.parse(path).getroot()
    size = root.find("size")
    width = float(size.findtext("width", "0")) if size is not None else 0.0
    height = float(size.findtext("height", "0")) if size is not None else 0.0
    boxes: list[tuple[float, ...]] = []
    for obj in root.iter("object"):
        if (obj.findtext("name") or "").strip() != name:
            continue
        box = obj.find("bndbox")
        x1, y1, x2, y2 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        if width and height:
            x1, x2 = np.clip([x1, x2], 0, width)
            y1, y2 = np.clip([y1, y2], 0, height)
        if x2 - x1 < 2 or y2 - y1 < 2:
            log.info("%s: skipped degenerate %s box %s", path, name, (x1, y1, x2, y2))
            continue
        if (x1, y1, x2, y2) not in boxes:
            boxes.append((x1, y1, x2, y2))
    return np.array(boxes, np.float32).reshape(-1, 4)


def _intersections(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(len(a), len(b)) intersection areas of two sets of boxes, and (len(a), 1), (1, len(b)) their areas."""
    a = np.asarray(a_xyxy, np.float32).reshape(-1, 4)[:, None]
    b = np.asarray(b_xyxy, np.float32).reshape(-1, 4)[None]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0, None)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return wh[..., 0] * wh[..., 1], area_a, area_b


def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of two sets of boxes."""
    inter, area_a, area_b = _intersections(a_xyxy, b_xyxy)
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def inside_share(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) share of each box of ``a`` that lies inside each box of ``b`` (1 for an empty box of ``a``)."""
    inter, area_a, _ = _intersections(a_xyxy, b_xyxy)
    return np.where(area_a > 0, inter / np.maximum(area_a, 1e-9), 1.0)


def points_in_boxes(points_xy: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
    """(n,) bool: whether each point lies in any of the boxes (edges included)."""
    points, boxes = np.asarray(points_xy).reshape(-1, 2), np.asarray(boxes_xyxy).reshape(-1, 4)
    if not len(points) or not len(boxes):
        return np.zeros(len(points), bool)
    return ((boxes[None, :, 0] <= points[:, None, 0]) & (points[:, None, 0] <= boxes[None, :, 2])
            & (boxes[None, :, 1] <= points[:, None, 1]) & (points[:, None, 1] <= boxes[None, :, 3])).any(axis=1)


def match_boxes(pred_xyxy: np.ndarray, true_xyxy: np.ndarray, threshold: float) -> tuple[int, int, int]:
    """Greedy one-to-one matching by IoU.

    Returns:
        (true positives, false positives, false negatives).
    """
    ious = iou_matrix(pred_xyxy, true_xyxy)
    matched = 0
    while ious.size and ious.max() >= threshold:
        i, j = np.unravel_index(ious.argmax(), ious.shape)
        matched += 1
        ious[i, :] = -1
        ious[:, j] = -1
    return matched, len(pred_xyxy) - matched, len(true_xyxy) - matched


def read_field_labels(folder: Path) -> dict[str, int]:
    """Class id per field from a ``wbc_labels.csv`` (single-class rows of the four classes only)."""
    labels: dict[str, int] = {}
    path = folder / "wbc_labels.csv"
    if not path.exists():
        path = folder.parent / "wbc_labels.csv"
    if not path.exists():
        return labels
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            names = {n.strip() for n in (row.get("category") or "").split(",") if n.strip()}
            if len(names) == 1:
                index = class_index(names.pop())
                if index is not None:
                    labels[row["image"].strip()] = index
    return labels
