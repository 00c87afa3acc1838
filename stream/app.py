"""The web page a technician keeps open next to the microscope (Gradio Blocks).

Tabs: Live (a server-side source, or the browser's webcam), Replay (upload a recording),
Image (a field or a single cell), Review (every counted cell, by class, least confident
first; a heat map of what the classifier looked at; corrections) and Your microscope (the
model adapted to the visitor's own cells, without labels). Callbacks only
convert inputs and outputs; the work is done by ``stream/`` and ``hv/``, and per-visitor
objects live in ``gr.State``, never in module globals.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import shutil
import tempfile
import threading
import weakref
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pandas as pd

from hv.classifier import Classifier
from hv.config import Config
from hv.field_images import (
    classify_image,
    compression_in_image,
    draw_cells,
    noise_in_field,
    small_cells_in_field,
    uneven_light_in_field,
)
from hv.labels import CLASS_NAMES, OTHER_ID, OUTPUT_NAMES, UNIDENTIFIED_ID
from hv.preprocess import NO_COLOUR, resize_field
from hv.saliency import GradCam, overlay_heat_map
from hv.stain import has_no_colour
from stream.annotators import name_of
from stream.corrections import CorrectionStore
from stream.counter import EXTRA_NAMES, UNIDENTIFIED
from stream.detections import Frame
from stream.live import CellRecord, LiveSession
from stream.microscope_adaptation import AdaptationError, AdaptedModel, MicroscopeAdapter
from stream.pipeline import StreamPipeline, run_stream
from stream.sources import CameraSource, SourceError, VideoFileSource
from stream.virtual_microscope import VirtualMicroscope

log = logging.getLogger(__name__)

VIDEO_TYPES = [".mp4", ".avi", ".mov", ".mkv", ".webm"]
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
THUMB_PX = 112  # review thumbnails: the crop at this size, with its caption drawn under it
REVIEW_GROUPS = (*OUTPUT_NAMES, UNIDENTIFIED)  # one gallery each
NO_ADAPTER = ("Adapting needs the Keras model behind the served one, and this server does not have it "
              "(serve a .keras model, or pass the package's source with --explain-model).")


def counts_table(counts: dict[str, int]) -> pd.DataFrame:
    identified = sum(counts[name] for name in CLASS_NAMES) or 1
    rows = [{"class": name, "cells": counts.get(name, 0),
             "percent": round(100 * counts[name] / identified, 1) if name in CLASS_NAMES else None}
            for name in (*CLASS_NAMES, *EXTRA_NAMES)]
    return pd.DataFrame(rows)


def review_groups(cells: list[CellRecord]) -> list[list[CellRecord]]:
    """Counted cells per REVIEW_GROUPS entry, least confident first (those most worth a look)."""
    groups: list[list[CellRecord]] = [[] for _ in REVIEW_GROUPS]
    for cell in sorted(cells, key=lambda c: c.confidence):
        groups[OTHER_ID + 1 if cell.label_id == UNIDENTIFIED_ID else cell.label_id].append(cell)
    return groups


def _enlarged(image_rgb: np.ndarray, side: int = 256) -> np.ndarray:
    """At least ``side`` pixels wide, so a small model's crop is not a postage stamp on the page."""
    if image_rgb.shape[1] >= side:
        return image_rgb
    return cv2.resize(image_rgb, (side, round(side * image_rgb.shape[0] / image_rgb.shape[1])),
                      interpolation=cv2.INTER_CUBIC)


def thumbnail(cell: CellRecord, check_below: float) -> np.ndarray:
    """The cell's crop at THUMB_PX with a two-line caption under it, so no layout can cut the caption off;
    "check" when its confidence is under ``check_below`` (``stream.check_below``) and no one corrected it."""
    crop = cv2.resize(cell.crop_rgb, (THUMB_PX, THUMB_PX), interpolation=cv2.INTER_AREA)
    strip = np.full((34, THUMB_PX, 3), 255, np.uint8)
    check = " check" if cell.confidence < check_below and not cell.corrected else ""
    lines = (f"#{cell.track_id} {name_of(cell.label_id)[:11]}",
             f"{cell.confidence:.0%}{check}" + (" corrected" if cell.corrected else ""))
    for row, text in enumerate(lines):
        colour = (200, 0, 0) if row == 1 and (check or cell.corrected) else (30, 30, 30)
        cv2.putText(strip, text, (3, 13 + 15 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.38, colour, 1, cv2.LINE_AA)
    return np.vstack([crop, strip])


def _session_crops(session) -> np.ndarray:
    """The crops a live session counted (what its classifier saw), as one array.

    Raises:
        AdaptationError: there is no live session yet.
    """
    if session is None:
        raise AdaptationError("no live session yet: start one on the Live tab and let it count cells")
    crops = [cell.crop_rgb for cell in session.cells()]
    return np.stack(crops) if crops else np.zeros((0, 1, 1, 3), np.uint8)


def _check_upload(path: str | None, allowed: list[str], what: str) -> Path:
    if not path:
        raise gr.Error(f"Upload a {what} first.")
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise gr.Error(f"{Path(path).name}: {suffix or 'no extension'} is not accepted; use {', '.join(allowed)}.")
    return Path(path)


class SourcePolicy:
    """The live sources a visitor may open: only what the server's config lists.

    A visitor picks a kind and one of its listed values; a camera index or URL that the
    config does not list is refused, so a page visitor cannot make the server open another
    device or address (request forgery once the app is reachable beyond loopback).
    """

    def __init__(self, config: Config):
        serve = config.serve
        self.video_dir = Path(serve.video_dir) if serve.video_dir else None
        recordings = (sorted(p.name for p in self.video_dir.iterdir() if p.suffix.lower() in VIDEO_TYPES)
                      if self.video_dir and self.video_dir.is_dir() else [])
        self.allowed = {"camera": list(serve.cameras), "network stream": list(serve.stream_urls),
                        "server recording": recordings}

    def kinds(self) -> list[str]:
        return ["virtual microscope", *(kind for kind, values in self.allowed.items() if values)]

    def open(self, kind: str, value: str):
        """Open the source, or raise SourceError saying what is offered."""
        if kind == "virtual microscope":
            return VirtualMicroscope(num_frames=None, realtime=True)
        offered = self.allowed.get(kind)
        if offered is None:
            raise SourceError(f"unknown source kind {kind!r}; choose one of {', '.join(self.kinds())}")
        if value not in offered:
            raise SourceError(f"{kind} {value!r} is not offered by this server"
                              + (f"; choose one of {', '.join(offered)}" if offered else
                                 "; an administrator lists them in config.toml [serve]"))
        if kind == "camera":
            return CameraSource(int(value))
        if kind == "network stream":
            return CameraSource(value)
        return VideoFileSource(self.video_dir / value)


class SessionLimit:
    """At most ``limit`` live sessions running at once, over all visitors of one app.

    A session whose page has not asked for a frame for ``idle_s`` seconds (a closed laptop, a
    lost network: the page's own close callback never came) is closed, so it frees its place,
    its device and its temporary folder.
    """

    def __init__(self, limit: int, idle_s: float = 900.0):
        self.limit, self.idle_s = limit, idle_s
        self._sessions: weakref.WeakSet[LiveSession] = weakref.WeakSet()
        self._lock = threading.Lock()
        # At exit, stop the sessions still running: a pipeline thread killed mid-inference aborts the
        # interpreter ("terminate called without an active exception") instead of letting it exit.
        atexit.register(SessionLimit._close_all_at_exit, weakref.ref(self))

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.close()

    @staticmethod
    def _close_all_at_exit(ref: weakref.ref) -> None:
        limit = ref()
        if limit is not None:
            limit.close_all()

    def close_idle(self) -> int:
        """Close the sessions idle for longer than ``idle_s``; returns how many."""
        with self._lock:
            idle = [s for s in self._sessions if s.running and s.idle_s() > self.idle_s]
        for session in idle:
            log.info("closing live session %s: no page asked for it for %.0f s", session.source.name, session.idle_s())
            session.close()
        return len(idle)

    def admit(self, make_session):
        """``make_session()`` if a place is free, else SourceError; the session is counted while it runs."""
        self.close_idle()
        with self._lock:
            running = sum(1 for s in self._sessions if s.running)
            if running >= self.limit:
                raise SourceError(f"this server already runs {running} live sessions, its limit; "
                                  "stop one (or wait) and start again")
            session = make_session()
            self._sessions.add(session)
            return session


class ReplayFolders:
    """The Replay tab's output folders: the newest ``keep`` stay for download, older ones are removed."""

    def __init__(self, keep: int):
        self.keep = keep
        self._folders: collections.deque[Path] = collections.deque()
        self._lock = threading.Lock()

    def new(self) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="hv-replay-"))
        with self._lock:
            self._folders.append(folder)
            while len(self._folders) > self.keep:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)
        return folder

    def remove_all(self) -> None:
        with self._lock:
            while self._folders:
                shutil.rmtree(self._folders.popleft(), ignore_errors=True)


def build_app(classifier: Classifier, config: Config, *, autostart: bool = False, explainer: GradCam | None = None,
              explainer_note: str = "no heat maps: no Keras model was given",
              adapter: MicroscopeAdapter | None = None) -> gr.Blocks:
    """The Blocks app; ``launch_app`` starts it. ``autostart`` starts the virtual microscope on page load.

    ``explainer`` draws the Review page's heat maps (Grad-CAM of the Keras model behind ``classifier``);
    without one the page shows the crop and ``explainer_note`` says why. ``adapter`` adapts that
    Keras model to a visitor's microscope; without one the tab says why it cannot.
    """
    policy = SourcePolicy(config)
    limit = SessionLimit(config.serve.max_live_sessions, config.serve.idle_session_s)
    replays = ReplayFolders(keep=8)
    corrections = CorrectionStore(config.serve.corrections_dir) if config.serve.corrections_dir else None

    def serving(adapted: AdaptedModel | None) -> tuple[Classifier, GradCam | None]:
        """The visitor's classifier and its heat maps: the adapted model's, else the served one's."""
        return (adapted.classifier, adapted.explainer) if adapted is not None else (classifier, explainer)

    def start(kind, value, session, adapted):
        if session is not None:
            session.stop()
        active, active_explainer = serving(adapted)
        try:
            session = limit.admit(lambda: LiveSession(policy.open(kind, value or ""), active, config,
                                                      corrections=corrections, explainer=active_explainer))
        except SourceError as exc:
            raise gr.Error(str(exc)) from exc
        return session, f"Running: {session.source.name}"

    def stop(session):
        if session is not None:
            session.stop()
        return None, "Stopped."

    def poll(session):
        limit.close_idle()
        if session is None:
            # Re-say it: a tick that read the session before Stop can land after Stop's own update.
            return gr.skip(), gr.skip(), "Stopped."
        session.touch()
        frame = session.latest_frame()
        # A tick already in flight when Stop is pressed lands after it: it must say "Stopped" too.
        if session.stopped:
            state = "Stopped"
        elif session.running:
            state = "Running"
        else:
            # The exception's text stays in the server log; a visitor learns that it failed.
            state = "Ended" + (": the source failed (details in the server log)" if session.error else "")
        status = f"{state} — {session.source.name} — model {session.pipeline.model['name']}"
        read_fps = getattr(session.source, "read_fps", None)
        if read_fps:
            status += f" — source {read_fps:.0f} frames/s"
        if session.status():
            status += f" — {session.status()}"  # a skipped frame's reason, or the count against its target
        table = counts_table(session.counts())
        return (frame if frame is not None else gr.skip()), table, status

    def webcam_frame(image_rgb, state, adapted):
        if image_rgb is None:
            return None, state
        active = serving(adapted)[0]
        pipeline, index = state if state and state[0].track_classifier.classifier is active else (
            StreamPipeline(active, config), 0)  # a new count when the visitor's model changed
        frame = Frame(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), index, index / 10, 0.0)
        scene, _ = pipeline.process(frame)
        return cv2.cvtColor(scene, cv2.COLOR_BGR2RGB), (pipeline, index + 1)

    def replay(path, adapted, progress=gr.Progress(track_tqdm=True)):  # noqa: B008 - Gradio's way to ask for a bar
        video = _check_upload(path, VIDEO_TYPES, "video")
        out_dir = replays.new()
        try:
            with VideoFileSource(video) as source:
                summary = run_stream(source, StreamPipeline(serving(adapted)[0], config), out_dir, video=True)
        except SourceError as exc:
            raise gr.Error(str(exc)) from exc
        return (str(out_dir / "annotated.webm"), str(out_dir / "cells.csv"), str(out_dir / "summary.json"),
                counts_table(summary["counts"]))

    def classify_upload(image_rgb, mode, adapted):
        if image_rgb is None:  # a user's slip, not an error: say so, log nothing
            gr.Warning("Upload an image first.")
            return gr.skip(), gr.skip(), gr.skip()
        if has_no_colour(image_rgb):
            gr.Warning(f"Not classified: {NO_COLOUR}.")
            return gr.skip(), gr.skip(), gr.skip()
        active = serving(adapted)[0]
        if mode == "single cell":
            probs = active.predict(resize_field(image_rgb, active.image_size)[None])[0]
            return image_rgb, {name: float(p) for name, p in zip(OUTPUT_NAMES, probs)}, None
        cells = classify_image(active, image_rgb, config)
        boxes, probs, whole = cells.boxes, cells.probs, cells.whole
        annotated = cv2.cvtColor(draw_cells(image_rgb, boxes, probs, whole), cv2.COLOR_BGR2RGB)
        for note in (small_cells_in_field(cells, config), compression_in_image(image_rgb, config),
                     uneven_light_in_field(cells), noise_in_field(cells, config)):
            if note:
                gr.Warning(f"{note[0].upper()}{note[1:]}.")
        rows = [{"cell": i + 1, "label": OUTPUT_NAMES[p.argmax()], "confidence": round(float(p.max()), 3),
                 "view": "whole" if w else "cut",
                 "x": int(b[0]), "y": int(b[1]), "w": int(b[2] - b[0]), "h": int(b[3] - b[1])}
                for i, (b, p, w) in enumerate(zip(boxes, probs, whole))]
        if not rows:
            gr.Warning("No white cell found in this image.")
        return annotated, None, pd.DataFrame(rows)

    def review(session, shown):
        """The galleries, the track ids behind them and what they show; skipped when nothing changed."""
        groups = review_groups(session.cells()) if session is not None else [[] for _ in REVIEW_GROUPS]
        signature = [[c.track_id, c.label_id, round(c.confidence, 2), c.corrected] for g in groups for c in g]
        if signature == shown:  # the timer asks every 2 s; resending unchanged pictures would make the page flicker
            return [gr.skip()] * (len(REVIEW_GROUPS) + 2)
        # The caption is drawn into the picture: never cut off.
        galleries = [[thumbnail(c, config.stream.check_below) for c in g] for g in groups]
        return [*galleries, [[c.track_id for c in g] for g in groups], signature]

    def explain(session, track_id):
        """The selected cell's best crop with the heat map over it, and a line about it."""
        cell = next((c for c in session.cells() if c.track_id == track_id), None) if session else None
        if cell is None:
            return None, "That cell is no longer in this session."
        text = (f"**Cell #{cell.track_id}**: {name_of(cell.label_id)}, {cell.confidence:.0%} (mean of its votes)"
                + (", corrected by you" if cell.corrected else ""))
        explainer = session.explainer  # the heat maps of the model that counted this session
        if explainer is None:
            return _enlarged(cell.crop_rgb), f"{text}. The crop it was classified from; {explainer_note}."
        label = cell.label_id if 0 <= cell.label_id < len(OUTPUT_NAMES) else None
        heat, probs = explainer.heat_map(cell.crop_rgb, label if label is not None else 0)
        if label is None:  # unidentified: show the evidence for the Keras model's own best guess
            label = int(np.argmax(probs))
            heat, probs = explainer.heat_map(cell.crop_rgb, label)
        return (_enlarged(overlay_heat_map(cell.crop_rgb, heat)),
                f"{text}. Heat map: where {explainer.path.name} found evidence for *{OUTPUT_NAMES[label]}* "
                f"(red strongest; it says {OUTPUT_NAMES[label]} {probs[label]:.0%}).")

    def adapt(cells_from_session: bool, session, files, adapted, with_corrections: bool = False):
        """Adapt the served model to the live session's cells or to uploaded fields; the visitor's model from now on.

        ``with_corrections``: then retrain its head on the cells corrected on the Review tab.
        """
        if adapter is None:
            gr.Warning(NO_ADAPTER)
            return gr.skip(), gr.skip(), gr.skip()
        labelled = corrections.folder if with_corrections and corrections is not None else None
        try:
            if cells_from_session:
                fresh = adapter.from_crops(_session_crops(session),
                                           f"live session {session.session_id} ({session.source.name})",
                                           labelled_folder=labelled)
            else:
                fresh = adapter.from_images(files or [], labelled_folder=labelled)
        except AdaptationError as exc:  # a visitor's slip (too few cells): said on the page, no traceback logged
            gr.Warning(str(exc))
            return gr.skip(), gr.skip(), gr.skip()
        if adapted is not None:
            adapted.close()
        gr.Info("Adapted. Start again on the Live tab to count with it.")
        return fresh, fresh.describe(), [str(fresh.path), str(fresh.report_path)]

    def check(cells_from_session: bool, session, files):
        """Whether the live session's cells or the uploaded fields' look unlike the training labs': adapt or not."""
        if adapter is None:
            gr.Warning(NO_ADAPTER)
            return gr.skip()
        try:
            if cells_from_session:
                crops = _session_crops(session)
                result = adapter.check_crops(crops, f"live session {session.session_id}")
            else:
                result = adapter.check_images(files or [])
        except AdaptationError as exc:
            gr.Warning(str(exc))
            return gr.skip()
        headline = {"advised": "Adapting is advised", "not needed": "No need to adapt",
                    "unclear": "Adapting may help or cost a little"}[result.advice]
        return f"**{headline}.** {result.describe()}."

    def back_to_served(adapted):
        if adapted is not None:
            adapted.close()
        return None, served_text, None

    def make_select(group: int):
        def select(ids, session, evt: gr.SelectData):
            track_id = ids[group][evt.index] if ids and evt.index < len(ids[group]) else None
            picture, text = explain(session, track_id)
            return track_id, picture, text
        return select

    def apply_correction(session, track_id, label_name):
        if session is None or track_id is None:
            gr.Warning("Click a cell in the galleries first.")
            return gr.skip(), gr.skip()
        if label_name not in OUTPUT_NAMES:
            gr.Warning("Choose the cell's class first.")
            return gr.skip(), gr.skip()
        try:
            saved = session.correct(track_id, OUTPUT_NAMES.index(label_name))
        except KeyError:
            gr.Warning(f"Cell #{track_id} is not in this session's count any more.")
            return gr.skip(), gr.skip()
        where = f"; its crop is saved in {saved.parent.parent.name}/{saved.parent.name}/" if saved else ""
        gr.Info(f"Cell #{track_id} is now counted as {label_name}{where}.")
        return counts_table(session.counts()), explain(session, track_id)[1]

    served_text = ("Classifying with the served model" + (f" (`{adapter.keras_path.name}` for adapting)." if adapter
                   else f". {NO_ADAPTER}"))
    # delete_cache: Gradio's copies of served files (replay outputs, crops) older than a day go, checked hourly.
    with gr.Blocks(title="HematoVision", delete_cache=(3600, 86400)) as app:
        gr.Markdown("# HematoVision\nWhite blood cells found, classified and counted. "
                    "For research and teaching, not diagnosis.")
        # A closed page's session is stopped and its temporary folder removed.
        session = gr.State(None, delete_callback=lambda s: s.close() if s is not None else None)
        # The visitor's adapted model (None: the served one); its temporary folder goes with the page.
        adapted = gr.State(None, delete_callback=lambda a: a.close() if a is not None else None)
        with gr.Tab("Live"):
            with gr.Row():
                kind = gr.Radio(policy.kinds(), value="virtual microscope", label="Source")
                offered = [v for kind_name in ("camera", "network stream") for v in policy.allowed[kind_name]]
                value = gr.Dropdown(offered, label="Camera or stream (as the server lists them)",
                                    visible=bool(offered))
                recording = gr.Dropdown(policy.allowed["server recording"], label="Server recording",
                                        visible=bool(policy.allowed["server recording"]))
            with gr.Row():
                start_btn = gr.Button("Start", variant="primary")
                stop_btn = gr.Button("Stop")
            status = gr.Markdown("Stopped.", elem_id="live-status")
            with gr.Row():
                live_image = gr.Image(label="Stream", show_label=False, elem_id="live-image", interactive=False)
                with gr.Column():
                    live_counts = gr.Dataframe(counts_table({n: 0 for n in (*OUTPUT_NAMES, UNIDENTIFIED)}),
                                               label="Differential count", elem_id="live-counts")
                    # From 0, so that a class with one cell shows a bar.
                    live_plot = gr.BarPlot(x="class", y="cells", label="Cells per class", y_lim=[0, None],
                                           elem_id="live-plot")
            with gr.Accordion("Browser webcam", open=False):
                webcam = gr.Image(sources=["webcam"], streaming=True, label="Webcam", elem_id="webcam")
                webcam_out = gr.Image(label="Annotated", elem_id="webcam-out")
                webcam_state = gr.State(None)
                webcam.stream(webcam_frame, [webcam, webcam_state, adapted], [webcam_out, webcam_state],
                              stream_every=0.2, time_limit=600)
            start_btn.click(lambda k, v, r, s, a: start(k, r if k == "server recording" else v, s, a),
                            [kind, value, recording, session, adapted], [session, status])
            stop_btn.click(stop, session, [session, status])
            timer = gr.Timer(0.2)
            timer.tick(poll, session, [live_image, live_counts, status], show_progress="hidden")
            live_counts.change(lambda t: t, live_counts, live_plot, show_progress="hidden")
            if autostart:
                app.load(lambda s: start("virtual microscope", "", s, None), session, [session, status])
        with gr.Tab("Replay"):
            upload = gr.File(label="Recording", file_types=VIDEO_TYPES, elem_id="replay-upload")
            replay_btn = gr.Button("Process", variant="primary", elem_id="replay-run")
            replay_video = gr.Video(label="Annotated")
            with gr.Row():
                replay_csv = gr.File(label="Per-cell CSV", elem_id="replay-csv")
                replay_summary = gr.File(label="Summary")
            replay_counts = gr.Dataframe(label="Differential count")
            replay_btn.click(replay, [upload, adapted], [replay_video, replay_csv, replay_summary, replay_counts])
        with gr.Tab("Image"):
            mode = gr.Radio(["field", "single cell"], value="field", label="The image shows")
            image_in = gr.Image(label="Image", type="numpy", sources=["upload"], elem_id="image-upload")
            image_btn = gr.Button("Classify", variant="primary", elem_id="image-run")
            image_out = gr.Image(label="Cells", elem_id="image-out")
            image_probs = gr.Label(label="Class probabilities", num_top_classes=len(OUTPUT_NAMES))
            image_table = gr.Dataframe(label="Cells found", elem_id="image-table")
            gr.Markdown("'cut': the cell lies at the image edge, or at the rim of a round view (a photo "
                        "through an eyepiece), and may be cut off: check it (the live count never classifies "
                        "such a view).")
            image_btn.click(classify_upload, [image_in, mode, adapted], [image_out, image_probs, image_table])
        with gr.Tab("Review"):
            gr.Markdown(f"The live session's counted cells by class, least confident first ('check': under "
                        f"{config.stream.check_below:.0%}). Click a cell to see what the classifier looked at and to "
                        "correct its class: the count follows, and the crop is kept for training. Crops are shown "
                        "as the classifier saw them: under another stain or lamp, in the training labs' colours "
                        "(the status line then says \"colours adjusted\").")
            review_ids, review_shown, selected = gr.State(None), gr.State(None), gr.State(None)
            with gr.Row():
                with gr.Column(scale=3):
                    # Thumbnails at their own size in 8 columns, even when a class has one or two cells
                    # (Gradio's fit_columns would stretch those over the whole row).
                    galleries = [gr.Gallery(label=name, columns=8, fit_columns=False, height=230,
                                            object_fit="contain", allow_preview=False, format="png",
                                            elem_id=f"review-{name}")
                                 for name in REVIEW_GROUPS]
                with gr.Column(scale=1):
                    selected_image = gr.Image(label="What the classifier looked at", interactive=False, height=280,
                                              elem_id="review-heat")
                    selected_text = gr.Markdown("Click a cell.", elem_id="review-selected")
                    new_label = gr.Radio(list(OUTPUT_NAMES), label="Correct class", elem_id="review-label")
                    correct_btn = gr.Button("Apply correction", elem_id="review-apply")
            review_timer = gr.Timer(2.0)
            review_timer.tick(review, [session, review_shown], [*galleries, review_ids, review_shown],
                              show_progress="hidden")
            for group, gallery in enumerate(galleries):
                gallery.select(make_select(group), [review_ids, session], [selected, selected_image, selected_text])
            correct_btn.click(apply_correction, [session, selected, new_label], [live_counts, selected_text])
        with gr.Tab("Your microscope"):
            gr.Markdown("Another microscope is another lab: its stain, lamp and camera shift what the model sees. "
                        "Adapting re-estimates the model's colour and feature statistics on cells from your "
                        "microscope; no labels are needed. On another lab's smears it took a model trained on one "
                        "lab from 56 % to 81 % correct (models of 2026-12-04), and 32 cells did as well as 300 "
                        "(BENCHMARKS.md). Adapt "
                        "on the cells the live session has counted"
                        + (f" (at least {adapter.min_cells})" if adapter else "") + ", or on field images you "
                        "upload. *Check* first: adapting helps on a microscope unlike the model's training labs, "
                        "and on one like them it cost up to 4 points (most when the cells were mostly "
                        "neutrophils).")
            adapt_status = gr.Markdown(served_text, elem_id="adapt-status")
            # The cells a technician corrected are this microscope's cells with labels: the head can learn them.
            teach = gr.Checkbox(label="Also teach it the cells corrected on the Review tab (their labels retrain "
                                      "the model's last layers; at least 8 cells of 2 classes)",
                                value=False, visible=corrections is not None, elem_id="adapt-corrections")
            adapt_check = gr.Markdown("*Check* says whether the cells look unlike the ones the model learnt from, "
                                      "without changing anything.", elem_id="adapt-check")
            with gr.Row():
                check_live_btn = gr.Button("Check the live session's cells", elem_id="check-live")
                adapt_live_btn = gr.Button("Adapt to the live session's cells", variant="primary",
                                           elem_id="adapt-live")
                back_btn = gr.Button("Back to the served model", elem_id="adapt-back")
            adapt_files = gr.File(label="Field images from your microscope", file_count="multiple",
                                  file_types=["image"], height=220, elem_id="adapt-upload")  # a list, kept short
            with gr.Row():
                check_files_btn = gr.Button("Check these images", elem_id="check-files")
                adapt_files_btn = gr.Button("Adapt to these images", elem_id="adapt-files")
            adapted_download = gr.File(label="The adapted model and its report", interactive=False,
                                       elem_id="adapt-download")
            # One check or adaptation at a time over all visitors: each takes both CPU cores of a small server.
            check_live_btn.click(lambda s: check(True, s, None), session, adapt_check, concurrency_limit=1,
                                 concurrency_id="adapt")
            check_files_btn.click(lambda f: check(False, None, f), adapt_files, adapt_check, concurrency_limit=1,
                                  concurrency_id="adapt")
            adapt_live_btn.click(lambda s, a, t: adapt(True, s, None, a, t), [session, adapted, teach],
                                 [adapted, adapt_status, adapted_download], concurrency_limit=1,
                                 concurrency_id="adapt")
            adapt_files_btn.click(lambda f, a, t: adapt(False, None, f, a, t), [adapt_files, adapted, teach],
                                  [adapted, adapt_status, adapted_download], concurrency_limit=1,
                                  concurrency_id="adapt")
            back_btn.click(back_to_served, adapted, [adapted, adapt_status, adapted_download])
    return app


def launch_app(classifier: Classifier, config: Config, *, port: int | None = None, block: bool = True,
               autostart: bool = False, explainer: GradCam | None = None,
               explainer_note: str = "no heat maps: no Keras model was given",
               adapter: MicroscopeAdapter | None = None) -> gr.Blocks:
    """Start the app on ``serve.host``; a login is required when ``serve.username`` is set."""
    auth = None
    if config.serve.username:
        password = os.environ.get("HV_PASSWORD")
        if not password:
            raise ValueError("serve.username is set but HV_PASSWORD is empty; export HV_PASSWORD=...")
        auth = (config.serve.username, password)
    if not auth and config.serve.host not in _LOOPBACK:
        log.warning("!!! serving on %s with no login: anyone who can reach this address can use the app. "
                    "Set serve.username and HV_PASSWORD, or serve.host = \"127.0.0.1\". !!!", config.serve.host)
    app = build_app(classifier, config, autostart=autostart, explainer=explainer, explainer_note=explainer_note,
                    adapter=adapter)
    app.queue(default_concurrency_limit=4)
    app.launch(server_name=config.serve.host, server_port=port or config.serve.port, auth=auth,
               max_file_size=f"{config.serve.max_upload_mb}mb", prevent_thread_lock=not block,
               theme=gr.themes.Soft(), show_error=False)  # gr.Error messages still show; tracebacks do not
    return app

