"""The stream loop: source -> check quality -> follow the stage -> locate -> track on the slide
-> classify whole cells -> count -> annotate -> sinks."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hv.classifier import Classifier, model_identity
from hv.config import Config
from hv.field_of_view import FieldOfView, field_of_view, small_grey
from hv.illumination import Evening, RunningLight, evened, evening, usable_view
from hv.locator import RunningCellScale, locate_cells, small_cells_note
from hv.noise import noise_level, noisy_note
from hv.stain import LAMP, STAIN
from stream.annotators import BoxAnnotator, CountPanelAnnotator, LabelAnnotator, StatusAnnotator
from stream.counter import DifferentialCount
from stream.detections import Detections, Frame, mark_cut_cells
from stream.frame_quality import OUT_OF_FOCUS, REASONS, TOO_COMPRESSED, FrameQuality, QualityReport
from stream.motion import StageMotion, StagePosition
from stream.sinks import CsvSink, VideoSink, write_json_atomic
from stream.track_classifier import TrackClassifier
from stream.tracker import SlideTracker

log = logging.getLogger(__name__)

LATENCY_WINDOW = 10_000  # frames whose latency summary.json's p50 / p95 describe
# The status line says the colours were adjusted once at least half of this many counted cells or more were:
# a few cells near a bright edge do not make a microscope unlike the training labs'.
RECOLOURED_NOTE_MIN_CELLS = 5
# A camera's noise does not change from frame to frame: read on one located frame in NOISE_READ_EVERY, judged by
# the median of the last NOISE_READS reads (0.34 ms a read at 640 x 480: benchmarks/camera_noise.py).
NOISE_READ_EVERY, NOISE_READS = 10, 9


class StreamPipeline:
    """Per-frame processing with the state a stream needs (stage position, tracks, votes, counts).

    A frame that fails the quality checks is not used at all: no cell is located, classified
    or counted from it, and the motion estimate waits for the next good frame.
    """

    def __init__(self, classifier: Classifier, config: Config):
        self.config = config
        stream = config.stream
        self.model = model_identity(classifier)
        self.quality = FrameQuality(stream)
        self.motion = StageMotion(stream)
        self.tracker = SlideTracker(stream.track_min_iou, stream.track_max_missing, stream.max_remembered_cells,
                                    stream.track_max_centre_frac, stream.track_part_of_cell)
        self.track_classifier = TrackClassifier(
            classifier, config.locator, min_confidence=stream.min_confidence,
            recheck_every=stream.recheck_every, max_votes=stream.max_votes, clear_by=stream.clear_view_frac)
        self.scale = RunningCellScale(config.locator, every=stream.scale_every, window=stream.scale_window)
        # Uneven light (a vignette, a lamp off the axis) is divided out of the frames cells are looked for in;
        # how many were, and whether the latest was.
        self.light = RunningLight(config.locator.uneven_light_below)
        self.evened_frames, self.evened = 0, False
        # The evening of the light read in force (grey, colour), at this frame size: made again when either changes.
        self._evening: tuple[np.ndarray, np.ndarray | None, tuple[int, ...], Evening] | None = None
        # The camera's noise at the classifier's scale, read on one located frame in NOISE_READ_EVERY (hv.noise).
        self.noise_reads: collections.deque[float] = collections.deque(maxlen=NOISE_READS)
        self.diameter_px: float | None = None  # the latest frame's expected cell diameter
        # The expected diameter of the last frames cells were located in, and how many of all such frames had
        # cells fewer pixels across than the model learnt from (locator.min_cell_diameter_px).
        self.diameters_px: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.located_frames, self.small_cell_frames = 0, 0
        self.position: StagePosition | None = None  # the latest good frame's place on the slide
        self.report: QualityReport | None = None  # the latest frame's quality checks
        self.view: FieldOfView | None = None  # the latest frame's round field stop, if the optics show one
        self.skipped = dict.fromkeys(REASONS, 0)  # frames not used, by reason
        self.timings_ms = {"quality": 0.0, "motion": 0.0, "cells": 0.0}  # summed, for the cost of each step
        # How sure the motion estimate was: the last frames' phase-correlation responses (0-1).
        self.motion_responses: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
        self.counter = DifferentialCount(stream.target_count, stream.check_below)
        self.panel = CountPanelAnnotator(self.counter)
        self.annotators = (BoxAnnotator(), LabelAnnotator(), self.panel, StatusAnnotator(self))

    def process(self, frame: Frame) -> tuple[np.ndarray, Detections]:
        """Check, locate, track, classify and count the cells of one frame; return the annotated copy."""
        stream = self.config.stream
        height, width = frame.image_bgr.shape[:2]
        started = time.perf_counter()
        grey = small_grey(frame.image_bgr, stream.motion_width_px)
        self.view = field_of_view(grey)  # a round field stop's shadow, or None: the whole frame is lit
        self.report = self.quality.check(frame.image_bgr, grey, self.view)
        after_quality = time.perf_counter()
        self.timings_ms["quality"] += 1000 * (after_quality - started)
        detections = Detections.empty()
        taper = self.view.taper if self.view is not None else None
        if self.report.ok:
            self.position = self.motion.update(grey, width, taper)
            if self.position.new_region:  # motion lost: a jump, a blank view, or another objective
                self.scale.restart()
                self.light.restart()
            else:
                self.motion_responses.append(self.position.response)
            after_motion = time.perf_counter()
            self.timings_ms["motion"] += 1000 * (after_motion - after_quality)
            detections = self._cells(frame, (width, height), grey)
            self.timings_ms["cells"] += 1000 * (time.perf_counter() - after_motion)
        else:
            self.skipped[self.report.reason] += 1
            # A soft frame still shows where the stage is; a streaked one smears the shift along the pan
            # (on the counting benchmark following those moved the position 13-22 px off).
            if self.report.reason == OUT_OF_FOCUS:
                self.motion.follow(grey, width, taper)
                self.timings_ms["motion"] += 1000 * (time.perf_counter() - after_quality)
        scene = frame.image_bgr.copy()
        for annotator in self.annotators:
            scene = annotator.annotate(scene, detections)
        return scene, detections

    def _evening_of(self, surface: np.ndarray, frame_shape: tuple[int, ...], grey_shape: tuple[int, int]) -> Evening:
        """``evening`` of ``surface`` (and the light's colour), kept while the read stands (one in five changes it)."""
        colour = self.light.colour
        kept = self._evening
        if kept is None or kept[0] is not surface or kept[1] is not colour or kept[2] != frame_shape:
            self._evening = (surface, colour, frame_shape, evening(surface, frame_shape, grey_shape, colour))
        return self._evening[3]

    def _cells(self, frame: Frame, frame_size: tuple[int, int], grey: np.ndarray) -> Detections:
        image_rgb = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2RGB)  # the one colour conversion per frame
        surface = self.light.update(grey, self.view, image_rgb)
        self.evened = surface is not None
        view = self.view  # what a whole cell keeps clear of: a round stop's shadow, parts too dim to even
        if self.evened:
            gain, dim = self._evening_of(surface, image_rgb.shape, grey.shape)
            image_rgb = evened(image_rgb, gain)
            view = usable_view(dim, self.view)
            self.evened_frames += 1
        self.diameter_px = self.scale.update(image_rgb)
        self.diameters_px.append(self.diameter_px)
        self.located_frames += 1
        self.small_cell_frames += self.diameter_px < self.config.locator.min_cell_diameter_px
        if self.config.stream.noise_max and self.located_frames % NOISE_READ_EVERY == 1:
            self.noise_reads.append(noise_level(image_rgb, self.diameter_px, self.config.locator.crop_context,
                                                self.track_classifier.classifier.image_size, cv2.COLOR_RGB2GRAY))
        detections = Detections(locate_cells(image_rgb, self.config.locator, self.diameter_px))
        margin = self.config.stream.edge_margin_frac * self.diameter_px
        detections = mark_cut_cells(detections, frame_size, margin, view)
        detections = self.tracker.update(detections, frame.index, self.position, frame_size, self.diameter_px)
        detections = self.track_classifier.update(detections, image_rgb, frame.index, self.diameter_px)
        self.track_classifier.forget(self.tracker.known_track_ids)
        self.counter.update(detections)
        return detections

    def summary(self) -> dict:
        """Counts, the differential with 95 % intervals, frames skipped and the model, for summary.json."""
        counter = self.counter
        intervals = counter.intervals()
        return {
            "model": self.model,
            # Crops whose red cells were not eosin-pink were turned to the training labs' colours (hv.stain).
            "stain_correction": self.config.locator.stain_correction,
            # Counted cells whose crops it changed: the training labs' plasma ("lamp") or colours ("stain").
            "recoloured": self.counter.recoloured(),
            "cells": counter.total, "identified": counter.identified, "corrected": counter.corrected,
            "counts": counter.counts(),
            "percent": {k: round(v, 2) for k, v in counter.percentages().items()},
            "percent_ci95": {name: [round(lo, 2), round(hi, 2)] for name, (lo, hi) in intervals.items()},
            "target_count": counter.target or None, "differential_complete": counter.complete,
            "to_check": counter.to_check,  # counted cells under stream.check_below, not yet corrected
            "frames_skipped": dict(self.skipped),
            # The scale cells were located and cropped at, and the frames whose cells were smaller than the
            # model learnt from (their labels less sure: hv.locator.small_cells_note).
            "cell_diameter_px": round(float(np.median(self.diameters_px)), 1) if self.diameters_px else None,
            "small_cells": {"frames": self.small_cell_frames, "of_frames": self.located_frames,
                            "min_cell_diameter_px": self.config.locator.min_cell_diameter_px},
            # The camera's JPEG quality read back from its frames (hv.jpeg_blocks): 100, none under about
            # 80 seen; under stream.jpeg_quality_min its frames were skipped as "JPEG too compressed".
            "jpeg_quality": round(self.quality.jpeg_quality, 1) if self.quality.jpeg_quality is not None else None,
            # Frames divided by the light's fitted surface before locating (hv.illumination), and the surface's
            # darkest point in the view over its brightest as last read (1: even).
            "uneven_light": {"frames_evened": self.evened_frames, "of_frames": self.located_frames,
                             "darkest": round(self.light.darkest, 3) if self.light.darkest is not None else None,
                             "uneven_light_below": self.config.locator.uneven_light_below},
            # The camera's noise (hv.noise), the median of the last reads; over stream.noise_max labels are less sure.
            "camera_noise": {"level": round(self.camera_noise, 2) if self.camera_noise is not None else None,
                             "noise_max": self.config.stream.noise_max},
            "regions": self.motion.region + 1,  # more than one: the stage motion was lost (region - 1) times
            "motion_response": {  # phase-correlation peak, 0-1: how sure the stage-motion estimate was
                "median": round(float(np.median(self.motion_responses)), 3),
                "p05": round(float(np.percentile(self.motion_responses, 5)), 3)} if self.motion_responses else None,
        }

    @property
    def camera_noise(self) -> float | None:
        """The camera's noise as the recent frames read (hv.noise), or None before the first read."""
        return float(np.median(self.noise_reads)) if self.noise_reads else None

    @property
    def status(self) -> str:
        """One line for the overlay and the page: why a frame was skipped, or how far the count is."""
        if self.report is not None and not self.report.ok:
            if self.report.reason == TOO_COMPRESSED:  # the setting to change is the camera's: say what it reads
                return f"frame skipped: {TOO_COMPRESSED} (quality {self.quality.jpeg_quality:.0f}; set 30 or more)"
            return f"frame skipped: {self.report.reason}"
        if self.position is not None and self.position.new_region and self.position.region > 0:
            return f"stage motion lost: new region {self.position.region + 1} (cells seen before may be counted again)"
        # Cells the review page marks "check": what a technician should look at before trusting the count.
        to_check = f", {self.counter.to_check} to check" if self.counter.to_check else ""
        identified = self.counter.identified
        cells = f"{identified} {'cell' if identified == 1 else 'cells'}"
        small = small_cells_note(self.diameter_px, self.config.locator.min_cell_diameter_px, brief=True) \
            if self.diameter_px else None
        evened = "; light uneven: evened" if self.evened else ""
        noisy = "; camera noisy: labels less sure" if noisy_note(self.camera_noise,
                                                                  self.config.stream.noise_max) else ""
        notes = f"{to_check}{self._recoloured_note()}{f'; {small}' if small else ''}{evened}{noisy}"
        if self.counter.complete:
            return f"differential complete: {cells}{notes}"
        if self.counter.target:
            return f"{identified} / {self.counter.target} cells{notes}"
        return f"{cells}{notes}"

    def _recoloured_note(self) -> str:
        """Said once most counted cells' crops were recoloured: the microscope is unlike the training labs'."""
        recoloured, counted = self.counter.recoloured(), self.counter.total
        if counted < RECOLOURED_NOTE_MIN_CELLS or 2 * sum(recoloured.values()) < counted:
            return ""
        return f"; {'another stain' if recoloured[STAIN] >= recoloured[LAMP] else 'another lamp'}: colours adjusted"


def small_cells_line(summary: dict) -> str | None:
    """One line for the end of a run in which most frames' cells were smaller than the model learnt from."""
    small = summary.get("small_cells") or {}
    if not small.get("of_frames") or 2 * small["frames"] < small["of_frames"] or not summary.get("cell_diameter_px"):
        return None
    note = small_cells_note(summary["cell_diameter_px"], small["min_cell_diameter_px"])
    return f"{small['frames']} of {small['of_frames']} frames: {note}" if note else None


def noisy_camera_line(summary: dict) -> str | None:
    """One line for the end of a run whose camera was noisier than any image the model learnt from."""
    noise = summary.get("camera_noise") or {}
    return noisy_note(noise.get("level"), noise.get("noise_max", 0))


def uneven_light_line(summary: dict) -> str | None:
    """One line for the end of a run in which most frames were lit unevenly enough to be evened (hv.illumination)."""
    light = summary.get("uneven_light") or {}
    if not light.get("of_frames") or 2 * light["frames_evened"] < light["of_frames"] or light.get("darkest") is None:
        return None
    return (f"{light['frames_evened']} of {light['of_frames']} frames were lit unevenly (the view's darkest part at "
            f"{100 * light['darkest']:.0f} % of its brightest) and were evened before cells were looked for; centre "
            f"the lamp and the condenser (Koehler) or the camera adapter for the surest labels")


def motion_lost_line(summary: dict) -> str | None:
    """One line for the end of a run whose stage motion was lost: a cell seen on both sides of a loss may count twice.

    The live status says so at each loss; a recording too compressed loses it again and again (BENCHMARKS.md:
    an H.264 scan at CRF 45 lost it 18 times and counted 41 cells twice), which one line at the end makes plain.
    """
    losses = (summary.get("regions") or 1) - 1
    if losses < 1:
        return None
    times = "once" if losses == 1 else f"{losses} times"
    return (f"the stage motion was lost {times} ({losses + 1} regions): a cell seen before and after a loss may be "
            f"counted twice; pan steadily, without jumps, and record or stream at a quality that keeps the view sharp")


def run_stream(source, pipeline: StreamPipeline, out_dir: Path, *, video: bool = False, display: bool = False,
               progress: bool = True, max_frames: int | None = None,
               on_frame: Callable[[Frame, np.ndarray, Detections], None] | None = None,
               stop: threading.Event | None = None) -> dict:
    """Run ``pipeline`` over ``source`` until it ends, Ctrl-C, ``max_frames`` or ``stop`` is set.

    ``on_frame(frame, annotated_bgr, detections)`` is called after each frame (the web app
    keeps the newest one for the page).

    Writes ``out_dir/cells.csv`` as it goes (flushed per frame), ``out_dir/summary.json``
    atomically at the end, also on interrupt or error (then ``complete`` is false), and
    ``out_dir/annotated.webm`` if ``video``.

    Returns:
        The summary dictionary.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    started, frames, last_frame = time.monotonic(), 0, None
    # The last frames' latencies only, so a stream that runs for days keeps bounded memory.
    latencies_ms: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)
    status = {"complete": False, "error": None}
    bar = tqdm(total=getattr(source, "frame_count", None), unit="frame", disable=not progress or source.live)
    fps_times: list[float] = []
    csv_path = out_dir / "cells.csv"
    sink_video = VideoSink(out_dir / "annotated.webm", getattr(source, "fps", None) or 30.0) if video else None
    try:
        with CsvSink(csv_path, model_sha256=pipeline.model["sha256"]) as csv_sink:
            for frame in source:
                if stop is not None and stop.is_set():
                    break
                scene, detections = pipeline.process(frame)
                now = time.monotonic()
                latencies_ms.append((now - frame.captured_at) * 1000)
                fps_times = [t for t in fps_times if now - t < 1.0] + [now]
                pipeline.panel.fps = len(fps_times) if now - started > 1.0 else None
                csv_sink.write(frame, detections, pipeline.position)
                if sink_video:
                    sink_video.write(scene)
                if display:
                    cv2.imshow("HematoVision", scene)
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
                if on_frame:
                    on_frame(frame, scene, detections)
                frames, last_frame = frames + 1, frame
                bar.update(1)
                if max_frames and frames >= max_frames:
                    break
        status["complete"] = True
    except KeyboardInterrupt:
        status["error"] = "interrupted"
        raise
    except Exception as exc:
        status["error"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        bar.close()
        if sink_video:
            sink_video.close()
        if display:
            cv2.destroyAllWindows()
        wall = time.monotonic() - started
        source_error = getattr(source, "error", None)
        summary = {
            "source": source.name, **pipeline.summary(), "frames": frames,
            "duration_s": round(last_frame.timestamp_s, 3) if last_frame else 0.0,
            "wall_s": round(wall, 3), "fps": round(frames / wall, 2) if wall > 0 else 0.0,
            "ms_per_frame": {step: round(total / frames, 3) for step, total in pipeline.timings_ms.items()}
            if frames else None,
            "latency_ms": {"p50": round(float(np.percentile(latencies_ms, 50)), 2),
                           "p95": round(float(np.percentile(latencies_ms, 95)), 2)} if latencies_ms else None,
            "source_fps": getattr(source, "read_fps", None) or getattr(source, "fps", None),
            "complete": status["complete"] and source_error is None, "error": status["error"] or source_error,
        }
        write_json_atomic(out_dir / "summary.json", summary)
    return summary
