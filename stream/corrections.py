"""A technician's corrections, kept as a data set that ``hv train`` takes as one more source.

Layout (class folders, like blood-cells/ and pbc/, plus a CSV that says where each crop
came from)::

    corrections/
      corrections.csv            file, label, model_label, confidence, track_id, session, source, model_sha256, time
      neutrophil/<session>_<track>.png
      other/<session>_<track>.png

A cell corrected twice keeps only its latest label: its crop moves to the new class folder,
so the data set never holds one cell under two labels. The CSV is rewritten atomically.
"""

from __future__ import annotations

import csv
import datetime
import os
import threading
from pathlib import Path

import cv2
import numpy as np

from hv.labels import OUTPUT_NAMES

CSV_NAME = "corrections.csv"
COLUMNS = ("file", "label", "model_label", "confidence", "track_id", "session", "source", "model_sha256", "time")


class CorrectionStore:
    """Saves corrected crops under ``folder``; safe to share between the page's sessions."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self._lock = threading.Lock()
        self._rows: dict[str, dict] = {}  # by file stem: one row per cell
        csv_path = self.folder / CSV_NAME
        if csv_path.is_file():
            with csv_path.open(newline="") as f:
                self._rows = {Path(row["file"]).stem: row for row in csv.DictReader(f)}

    def save(self, crop_rgb: np.ndarray, label_id: int, *, model_label: str, confidence: float, track_id: int,
             session: str, source: str, model_sha256: str | None) -> Path:
        """Write the crop under its new class and record it; returns the crop's path."""
        if not 0 <= label_id < len(OUTPUT_NAMES):
            raise ValueError(f"label {label_id} is not one of {', '.join(OUTPUT_NAMES)}")
        stem = f"{session}_{track_id}"
        path = self.folder / OUTPUT_NAMES[label_id] / f"{stem}.png"
        with self._lock:
            old = self._rows.get(stem)
            path.parent.mkdir(parents=True, exist_ok=True)
            encoded, png = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
            if not encoded:
                raise ValueError(f"cannot encode the crop of cell #{track_id} as PNG")
            tmp = path.with_name(f".{path.name}.tmp")  # not an image suffix: training never reads a half file
            tmp.write_bytes(png.tobytes())
            os.replace(tmp, path)
            if old is not None and (self.folder / old["file"]) != path:
                (self.folder / old["file"]).unlink(missing_ok=True)  # the cell's earlier label
            self._rows[stem] = {
                "file": path.relative_to(self.folder).as_posix(), "label": OUTPUT_NAMES[label_id],
                "model_label": model_label, "confidence": f"{confidence:.4f}", "track_id": track_id,
                "session": session, "source": source, "model_sha256": model_sha256 or "",
                "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            }
            self._write_csv()
        return path

    def _write_csv(self) -> None:
        tmp = self.folder / f".{CSV_NAME}.tmp"
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(self._rows.values())
        os.replace(tmp, self.folder / CSV_NAME)

    def __len__(self) -> int:
        return len(self._rows)
