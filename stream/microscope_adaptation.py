"""The web page's "your microscope" step: the served model adapted to a visitor's cells, no labels needed.

A visitor's microscope is another lab: another stain, lamp and camera. ``hv adapt`` answers
that from the command line; this is the same step for the page. The cells come from the
visitor's live session (the crops it counted: exactly what the classifier saw) or from
field images they upload; the Keras model behind the served one gets ``stem_bn`` and
``top_bn`` re-estimated on them (``training.lab_adaptation``: on the cross-lab validation
set 32 cells did as well as 852, and at a smear's class mix as well as 300, BENCHMARKS.md);
the visitor can first check whether their cells need it (``check_crops``, ``check_images``).
The adapted model then serves that visitor's next live session, replay and image; a session
already running keeps its model, since a count is made by one model, the one its summary names.

Each adapted model lives in a temporary folder of its own, offered for download, and is
removed when the visitor adapts again, goes back to the served model, or closes the page.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hv.classifier import KerasClassifier, file_sha256
from hv.config import Config
from hv.saliency import GradCam

if TYPE_CHECKING:
    from training.lab_adaptation import AdaptationReport, ShiftCheck

log = logging.getLogger(__name__)


class AdaptationError(ValueError):
    """Adapting cannot be done with what was given (too few cells, no readable image); the text says why."""


@dataclass(frozen=True)
class AdaptedModel:
    """One visitor's adapted model: the classifier, its heat maps, and the files offered for download."""

    path: Path  # <folder>/adapted-<time>.keras, with <stem>.adapt.json beside it
    sha256: str
    classifier: KerasClassifier
    explainer: GradCam
    report: AdaptationReport
    seconds: float

    @property
    def report_path(self) -> Path:
        return self.path.with_suffix(".adapt.json")

    def describe(self) -> str:
        """What the page says about it (Markdown)."""
        from training.lab_tuning import flagged_text, per_class_text

        report = self.report
        skipped = f"; {len(report.unreadable)} unreadable files skipped" if report.unreadable else ""
        advice = {"advised": "",
                  "not needed": " **These cells looked like the ones the model learnt from**: adapting was not "
                                "needed, and on such cells it cost up to 4 points in validation; *Back to the served "
                                "model* undoes it.",
                  "unclear": " These cells looked somewhat unlike the ones the model learnt from, where adapting "
                             "has gone both ways in validation: compare both models on cells you have labelled."
                  }[report.advice]
        tuned = report.labelled
        taught = (f", then its head retrained on the **{tuned['cells']} cells corrected on the Review tab** "
                  f"({per_class_text(tuned['per_class'])}; {flagged_text(tuned)})" if tuned else "")
        return (f"**Classifying with the model adapted to your microscope**: `{self.path.name}` (sha256 "
                f"{self.sha256[:12]}…), {', '.join(report.layers)} re-estimated on **{report.cells} cells** from "
                f"{report.cells_from}{skipped}{taught}, in {self.seconds:.0f} s. It serves your next Start, Replay and "
                "Image; a count already running keeps the model it started with. For a phone app: "
                f"`hv export --model {self.path.name} --lab-data FOLDERS_OF_THIS_MICROSCOPE --out EXPORT`.{advice}")

    def close(self) -> None:
        shutil.rmtree(self.path.parent, ignore_errors=True)


class MicroscopeAdapter:
    """Adapts the Keras model ``keras_path`` (the one behind the served model) to a visitor's cells.

    Example:
        adapter = MicroscopeAdapter(Path("models/hv_lite0.keras"), config)
        adapted = adapter.from_crops(crops_rgb, "live session 1a2b3c4d (virtual microscope)")
        adapted.classifier.predict(crops_rgb)  # the visitor's classifier from now on
    """

    def __init__(self, keras_path: Path, config: Config, *, min_cells: int | None = None, max_cells: int = 1000,
                 layers: Sequence[str] | None = None):
        from training.lab_adaptation import DEFAULT_LAYERS, MIN_CELLS  # TensorFlow: only where a model is adapted

        min_cells = MIN_CELLS if min_cells is None else min_cells
        layers = DEFAULT_LAYERS if layers is None else layers
        self.keras_path = Path(keras_path)
        self.config = config
        self.min_cells, self.max_cells, self.layers = min_cells, max_cells, tuple(layers)
        self.source_sha256 = file_sha256(self.keras_path)
        self.image_size = KerasClassifier(self.keras_path).image_size

    def from_crops(self, crops_rgb: np.ndarray, cells_from: str, *, images_found: int = 0, images_read: int = 0,
                   unreadable: Sequence[str] = (), without_whole_cell: int = 0,
                   labelled_folder: Path | None = None) -> AdaptedModel:
        """Adapt on classifier crops ((n, S, S, 3) uint8 RGB, S = the model's input size).

        With ``labelled_folder`` (class folders: the page's corrections), the adapted model's head is then
        retrained on those cells (``training.lab_tuning``).

        Raises:
            AdaptationError: fewer than ``min_cells`` crops, crops of another size, or labelled cells too few to
                tune on.
        """
        from training.lab_adaptation import AdaptationReport, adapted_model, save_adapted
        from training.lab_tuning import learnt_other, tune_on_labelled

        crops_rgb = self._usable(crops_rgb, cells_from)
        labelled = self._labelled(labelled_folder) if labelled_folder is not None else None
        started = time.monotonic()
        model, before = adapted_model(self.keras_path, crops_rgb, self.layers)
        tuning = (tune_on_labelled(model, *labelled, anchor_crops=crops_rgb, learnt_other=learnt_other(self.keras_path))
                  if labelled is not None else None)
        stamp = datetime.now(UTC)
        path = Path(tempfile.mkdtemp(prefix="hv-adapted-")) / f"adapted-{stamp:%Y%m%d-%H%M%S}.keras"
        report = AdaptationReport(
            source_model=self.keras_path.name, source_sha256=self.source_sha256, cells_from=cells_from,
            images_found=images_found, images_read=images_read, unreadable=list(unreadable),
            without_whole_cell=without_whole_cell, cells=len(crops_rgb), layers=list(self.layers), rebased_on=[],
            training_cells=0, feature_shift=before.feature_shift, advice=before.advice,
            date=stamp.isoformat(timespec="seconds"), labelled_from=[] if tuning is None else [str(labelled_folder)],
            labelled=None if tuning is None else asdict(tuning))
        try:
            save_adapted(model, path, report)
            adapted = AdaptedModel(path, file_sha256(path), KerasClassifier(path), GradCam(path), report,
                                   time.monotonic() - started)
        except BaseException:
            shutil.rmtree(path.parent, ignore_errors=True)
            raise
        log.info("adapted %s on %d cells from %s in %.1f s", self.keras_path.name, len(crops_rgb), cells_from,
                 adapted.seconds)
        return adapted

    def check_crops(self, crops_rgb: np.ndarray, cells_from: str) -> ShiftCheck:
        """How unlike the training labs' cells these cells look to the model, and the advice that gives.

        Raises:
            AdaptationError: as ``from_crops``.
        """
        from training.lab_adaptation import check_cells

        return check_cells(self._served_model, self._usable(crops_rgb, cells_from))

    @cached_property
    def _served_model(self):
        """The served Keras model, loaded once: a check only reads it (adapting changes a fresh copy)."""
        return KerasClassifier(self.keras_path).model

    def from_images(self, paths: Sequence[str | Path], labelled_folder: Path | None = None) -> AdaptedModel:
        """Adapt on the whole white cells located in field (or one-cell) images; unreadable files are skipped.

        Raises:
            AdaptationError: no file given, fewer than ``min_cells`` whole cells found, or (``labelled_folder``)
                too few labelled cells.
        """
        crops, cells_from, read, names, empty, found = self._image_crops(paths)
        return self.from_crops(crops, cells_from, images_found=found, images_read=read, unreadable=names,
                               without_whole_cell=empty, labelled_folder=labelled_folder)

    def check_images(self, paths: Sequence[str | Path]) -> ShiftCheck:
        """``check_crops`` of the whole white cells located in the images."""
        crops, cells_from = self._image_crops(paths)[:2]
        return self.check_crops(crops, cells_from)

    def _labelled(self, folder: Path) -> tuple[np.ndarray, np.ndarray]:
        """The crops and labels of the cells corrected into ``folder``, once there are enough to tune on."""
        from hv.preprocess import IMAGE_SUFFIXES
        from training.data import DataError
        from training.lab_tuning import labelled_cells

        if not folder.is_dir() or not any(path.suffix.lower() in IMAGE_SUFFIXES for path in folder.rglob("*")):
            raise AdaptationError("no cell has been corrected on the Review tab yet: correct some, or adapt without "
                                  "them")
        try:
            crops, labels, _ = labelled_cells([folder], self._model_config)
        except DataError as exc:
            raise AdaptationError(f"cells corrected on the Review tab: {exc}; correct more cells, or adapt without "
                                  "them") from exc
        return crops, labels

    @property
    def _model_config(self) -> Config:
        """The config with the adapted model's input size, whatever the served model's."""
        return replace(self.config, model=replace(self.config.model, image_size=self.image_size))

    def _usable(self, crops_rgb: np.ndarray, cells_from: str) -> np.ndarray:
        """At most ``max_cells`` of the crops, once there are enough of them at the model's input size."""
        if len(crops_rgb) < self.min_cells:
            raise AdaptationError(f"{len(crops_rgb)} cells from {cells_from}; adapting needs at least "
                                  f"{self.min_cells}: count more cells, or upload more fields")
        if crops_rgb.shape[1:] != (self.image_size, self.image_size, 3):
            raise AdaptationError(f"cells from {cells_from} are {crops_rgb.shape[1]} px crops; the model to adapt "
                                  f"takes {self.image_size} px")
        return crops_rgb[: self.max_cells]

    def _image_crops(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, str, int, list[str], int, int]:
        """(crops, where they came from, images read, unreadable names, images without a whole cell, images given)."""
        from training.lab_adaptation import collect_crops

        files = [Path(p) for p in paths]
        if not files:
            raise AdaptationError("upload field images from your microscope first")
        crops, unreadable, empty, read = collect_crops(files, self._model_config, self.max_cells)
        names = [Path(p).name for p in unreadable]
        if len(crops) < self.min_cells:
            bad = f" ({len(names)} unreadable: {', '.join(names[:5])}{' …' if len(names) > 5 else ''})" if names else ""
            raise AdaptationError(f"{len(crops)} whole white cells found in {len(files)} uploaded images{bad}; "
                                  f"adapting needs at least {self.min_cells}: upload more fields")
        return crops, f"{read} uploaded images", read, names, empty, len(files)
