"""A live session for the web page: the stream pipeline in a background thread.

The thread runs ``run_stream`` over a source and keeps only the newest annotated frame,
so the page, polling at its own pace, always shows the present and lag never grows.
It also keeps each counted cell's best crop (the most confident of its whole views) for
the review page, and takes the user's corrections: the count changes on the pipeline's
own thread, and the crop goes to the corrections data set.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hv.classifier import Classifier
from hv.config import Config
from hv.labels import OUTPUT_NAMES
from hv.saliency import GradCam
from stream.annotators import name_of
from stream.corrections import CorrectionStore
from stream.detections import Detections, Frame
from stream.pipeline import StreamPipeline, run_stream
from stream.sinks import write_json_atomic

log = logging.getLogger(__name__)

GALLERY_LIMIT = 300  # cells kept for review per session (their crops are classifier-sized)


@dataclass(frozen=True)
class CellRecord:
    """One counted cell for the review page.

    ``crop_rgb`` is the crop of the clearest view the cell's label rests on (the one furthest
    from the frame edge, ``TrackClassifier``), taken in frame ``view_frame``; ``label_id`` and
    ``confidence`` are the cell's current label and mean vote.
    """

    track_id: int
    crop_rgb: np.ndarray
    label_id: int
    confidence: float
    view_frame: int
    corrected: bool = False


class LiveSession:
    """Runs one source through the pipeline until it ends or ``stop()``; thread-safe snapshots."""

    def __init__(self, source, classifier: Classifier, config: Config, out_dir: Path | None = None,
                 corrections: CorrectionStore | None = None, explainer: GradCam | None = None):
        self.source = source
        self.pipeline = StreamPipeline(classifier, config)
        self.explainer = explainer  # heat maps for the review page, of the model that counts this session
        self.corrections = corrections
        self.session_id = uuid.uuid4().hex[:8]
        self._relabels: queue.SimpleQueue[tuple[int, int]] = queue.SimpleQueue()  # applied on the pipeline's thread
        self._own_out_dir = out_dir is None  # a temporary folder of its own, removed by close()
        self.out_dir = Path(out_dir or tempfile.mkdtemp(prefix="hv-live-"))
        self._config = config
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._latest_rgb: np.ndarray | None = None
        self._cells: dict[int, CellRecord] = {}
        self._counts: dict[str, int] = self.pipeline.counter.counts()
        self._status = ""
        self._finished = False  # the pipeline thread has stopped touching the pipeline
        self._last_asked = time.monotonic()  # when a page last asked for a frame (``touch``)
        self.summary: dict | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="hv live session", daemon=True)
        self._thread.start()

    def _on_frame(self, frame: Frame, scene_bgr: np.ndarray, detections: Detections) -> None:
        scene_rgb = cv2.cvtColor(scene_bgr, cv2.COLOR_BGR2RGB)
        counter = self.pipeline.counter
        self._apply_relabels()
        classifier = self.pipeline.track_classifier
        votes = classifier.last_votes
        with self._lock:
            self._latest_rgb = scene_rgb
            self._counts = counter.counts()  # read here, on the pipeline's thread
            self._status = self.pipeline.status
            for i, track in enumerate(detections.track_id):
                track = int(track)
                label = counter.label_of(track)
                if label is None:  # partial, or after the target: not in the count
                    continue
                old = self._cells.get(track)
                if track in votes:
                    if old is None and len(self._cells) >= GALLERY_LIMIT:
                        continue
                    if old is None or classifier.voted_frames(track)[:1] == [frame.index]:  # now its clearest view
                        old = CellRecord(track, votes[track][0], label, 0.0, frame.index,
                                         old.corrected if old else False)
                if old is not None:
                    self._cells[track] = dataclasses.replace(old, label_id=label,
                                                             confidence=float(detections.confidence[i]))

    def _apply_relabels(self) -> None:
        while True:
            try:
                track, label = self._relabels.get_nowait()
            except queue.Empty:
                return
            self.pipeline.counter.relabel(track, label)

    def correct(self, track_id: int, label_id: int) -> Path | None:
        """The user's label for a counted cell: the count follows, the crop joins the corrections data set.

        Returns the saved crop's path (None without a corrections folder).

        Raises:
            KeyError: the cell is not one of this session's counted cells.
        """
        if not 0 <= label_id < len(OUTPUT_NAMES):
            raise ValueError(f"label {label_id} is not one of {', '.join(OUTPUT_NAMES)}")
        with self._lock:
            record = self._cells.get(track_id)
            if record is None:
                raise KeyError(f"cell #{track_id} is not in this session's count")
            self._cells[track_id] = dataclasses.replace(record, label_id=label_id, corrected=True)
        saved = None
        if self.corrections is not None:
            saved = self.corrections.save(
                record.crop_rgb, label_id, model_label=name_of(record.label_id), confidence=record.confidence,
                track_id=track_id, session=self.session_id, source=self.source.name,
                model_sha256=self.pipeline.model["sha256"])
        with self._lock:
            self._relabels.put((track_id, label_id))
            finished = self._finished
        if finished:  # no pipeline thread any more to apply it
            self._after_end()
        return saved

    def _after_end(self) -> None:
        """Apply corrections that came after the last frame, and say them in summary.json too."""
        self._apply_relabels()
        with self._lock:
            self._counts = self.pipeline.counter.counts()
            self._status = self.pipeline.status  # "... N to check" falls as the user corrects cells
            if self.summary is not None:
                self.summary = {**self.summary, **self.pipeline.summary()}
                write_json_atomic(self.out_dir / "summary.json", self.summary)

    def _run(self) -> None:
        try:
            self.summary = run_stream(self.source, self.pipeline, self.out_dir, progress=False,
                                      on_frame=self._on_frame, stop=self._stop)
        except Exception as exc:  # shown on the page; the summary on disk says the same
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("live session failed")
        finally:
            self.source.close()
            with self._lock:
                self._finished = True
            self._after_end()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` was called (the user stopped it, rather than the source ending)."""
        return self._stop.is_set()

    def latest_frame(self) -> np.ndarray | None:
        with self._lock:
            return self._latest_rgb

    def cells(self) -> list[CellRecord]:
        with self._lock:
            return list(self._cells.values())

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def touch(self) -> None:
        """A page asked for this session: it is not idle."""
        self._last_asked = time.monotonic()

    def idle_s(self) -> float:
        """Seconds since a page last asked for this session."""
        return time.monotonic() - self._last_asked

    def status(self) -> str:
        """The pipeline's line: a skipped frame's reason, or the count against its target."""
        with self._lock:
            return self._status

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stop within about ``timeout_s``, also when the source is stalled, and release its device."""
        self._stop.set()
        self.source.close()  # ends the source's iterator even if no frame ever comes again
        self._thread.join(timeout=timeout_s)

    def close(self) -> None:
        """Stop, and remove the temporary output folder if the session made one (a page closed)."""
        self.stop()
        if self._own_out_dir:
            shutil.rmtree(self.out_dir, ignore_errors=True)
