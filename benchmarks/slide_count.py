"""Counting benchmark: a slide tiled from BCCD fields, scanned at several speeds, counted by the stream.

The slide: ``--cells`` BCCD fields that hold one labelled white cell each, every field cut to
a ``--tile`` window around its cell, tiled in a square grid (the virtual microscope's
mosaic). The scan (``serpentine_scan``): rows 0.4 frame heights apart, left to right and back,
then back over the first row (cells already counted), with hand jitter; ``--defects`` of
the frames are blurred, streaked by motion or dark. Every speed is run through the stream
pipeline exactly as ``hv replay`` runs it (quality checks, stage motion, slide tracker,
classifier, counter), with the target count off.

An 80-px margin of plain background surrounds the slide, so the scan can show its rim cells whole.
Truth: a cell is countable when its annotated box lies whole (but for 3 % of its side) in at least one
frame that is not a defect frame, and its tile does not cut it (a cell cut in its BCCD field, or by
the tile window); the others are "partial" in truth too. Each counted
track is matched to the annotated cell it overlaps most (IoU >= 0.3) in the frame where it
was first classified, which gives recounts (two tracks, one cell), misses, and cells
classified while the annotated box was cut by the frame edge.

Figures per speed: counted / countable cells and the error in percent; recounts; misses;
counted from a cut view, and those whose final label still rests on a view that cut the
annotated box (views clear of the edge outvote the first: ``TrackClassifier``); the
differential's distance from the truth (total variation, in points) and the counted labels'
agreement with the annotated ones; the same distance after a technician corrects every cell the
review page marks "check" (``after_review``: its mean vote under ``stream.check_below``; a
track that is no annotated cell is filed "other"), with how many cells that takes; replay frames/s and the
quality and motion checks' cost in ms per frame; for cells classified from a cut view, how far
their annotated box reached beyond the frame. Writes ``out/slide_count/slide_count.json``,
a picture of the slide with each speed's counted cells (``slide_count.png``) and, for each
cell classified while its annotated box reached beyond the frame, that frame with both boxes
(``speed_<n>/cut_view_frame<i>_track<t>_cell<j>.jpg``, j: the annotated cell's index).

The BCCD fields are the originals of blood-cells/TRAIN and TEST: the bundled model has seen
copies of many of them, so the label agreement is optimistic about the classifier; the
count figures do not depend on it.

``--stain brown_stain`` (or ``warm_lamp``, ``faded_stain``: ``synthetic_labs.py``'s colour shifts) draws
the whole slide as another lab's stain or lamp would, before the scan: the stream as a new lab
meets it (its locator, scale, frame checks and classifier), with the same fields, path and truth.

``--zoom 2.5`` sees the slide that many times larger (another camera adapter or objective: the mosaic
enlarged, the frame still 640 x 480), with the same fields and truth; the ``--tile`` and border grow with it.
``--zoom 0.5`` sees it smaller (a 40x objective where BCCD's camera had a 100x one: more of the slide in a frame).
``--frame-size 1280 960`` scans it with a camera of that many pixels (the same slide: a wider view; with
``--zoom 1.5``, a camera with more pixels over the same view as 640 x 480 at 1x). ``--jpeg-quality 30``
sends every frame through JPEG at that quality, as an MJPG USB or network camera does; ``--video-crf 28``
records the scan as H.264 at that CRF (ffmpeg's libx264) and replays it from the file, as a recording is.

``--scale-along-scan`` runs no stream: the cell scale the stream would measure on every 10th frame of the
slowest scan, against the same fields measured whole and the annotated cells' size
(``scale_along_scan.json``).

``--margin-geometry 0.2 0.3 0.4`` runs no stream: for each edge margin (in cell diameters) it
counts the countable cells that no good frame shows that far clear of every edge, the cost a
wider ``stream.edge_margin_frac`` has on this scan (``margin_geometry.json``).

Usage: python benchmarks/slide_count.py [--model hv/bundled/hv_lite0_int8/model.tflite]
       [--speeds 4 8 12 16 24] [--cells 100] [--bccd ../shared/data/bccd] [--out out/slide_count]
       [--margin-geometry FRACTION ...] [--not-in blood-cells/TRAIN] [--stain brown_stain] [--zoom 2.5]
       [--frame-size 1280 960] [--jpeg-quality 30 | --video-crf 28]
(``--not-in``: only fields without a copy in that part of blood-cells/, cells a model trained on it never saw)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np

from hv.annotations import iou_matrix, read_field_labels, read_voc_boxes
from hv.bundled import DEFAULT_MODEL
from hv.classifier import load_classifier
from hv.config import ConfigError, load_config, override
from hv.labels import CLASS_NAMES, OTHER_ID, PARTIAL_ID
from hv.locator import cell_diameter_px
from stream.annotators import name_of
from stream.pipeline import StreamPipeline, run_stream
from stream.virtual_microscope import VirtualMicroscope, serpentine_scan
from training.data import load_originals

REPO = Path(__file__).resolve().parent.parent
BCCD = REPO.parent / "shared" / "data" / "bccd"
FRAME = (640, 480)
FIELD = (640, 480)  # BCCD's field size
VISIBLE_SLACK = 0.03  # annotated boxes are a few pixels loose: 3 % outside the frame is still whole
# synthetic_labs.py's shifts that act on each pixel alone, so they can draw a whole slide (blur and zooms cannot)
STAINS = ("none", "brown_stain", "warm_lamp", "faded_stain")


def originals_in(part: str) -> set[str]:
    """BCCD fields with a copy in ``part`` (e.g. "blood-cells/TRAIN"), by the bundled grouping of blood-cells/."""
    groups = load_originals("bundled")
    found = {group for key, group in groups.items() if key.startswith(part.rstrip("/") + "/")}
    if not found:
        raise SystemExit(f"--not-in {part}: no image of the bundled grouping lies there "
                         "(expected e.g. blood-cells/TRAIN or blood-cells/TEST)")
    return found


def choose_fields(bccd: Path, count: int, tile: tuple[int, int], seed: int,
                  exclude: set[str] = frozenset()) -> list[str]:
    """BCCD fields with one labelled white cell, whole in its field, that fits its tile with 10 px to spare,
    other than ``exclude``."""
    labels = read_field_labels(bccd)
    eligible = []
    for name in sorted(set(labels) - set(exclude)):
        xml = bccd / "Annotations" / f"{name}.xml"
        if not xml.exists():
            continue
        boxes = read_voc_boxes(xml)
        if len(boxes) != 1:
            continue
        x1, y1, x2, y2 = boxes[0]
        in_field = x1 > 2 and y1 > 2 and x2 < FIELD[0] - 2 and y2 < FIELD[1] - 2  # not cut by the field's own edge
        if in_field and x2 - x1 <= tile[0] - 20 and y2 - y1 <= tile[1] - 20:
            eligible.append(name)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(eligible, size=min(count, len(eligible)), replace=False).tolist())


def jpeg_coded(frame: np.ndarray, quality: int) -> np.ndarray:
    """``frame`` (BGR) through JPEG at ``quality``, as a camera sending MJPG would give it; 0: as it is."""
    if not quality:
        return frame
    _, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


class CompressedMicroscope(VirtualMicroscope):
    """The virtual microscope through a camera that sends JPEG frames of ``jpeg_quality`` (an MJPG USB or
    network camera), or its scan recorded as H.264 at ``video_crf`` and replayed from the file (a recording
    made with ffmpeg's libx264); 0: frames as rendered."""

    jpeg_quality = 0
    video_crf = 0
    light: np.ndarray | None = None  # (h, w, 1 or 3) float32: the light reaching each pixel (a stop, a vignette)
    noise = 0.0  # the camera's noise: Gaussian, this standard deviation in 8-bit levels, drawn anew each frame
    _recording: tuple[tempfile.TemporaryDirectory, cv2.VideoCapture] | None = None
    _next_index = 0

    def render(self, index: int) -> np.ndarray:
        if self.video_crf:
            return self._recorded(index)
        return jpeg_coded(self._camera(super().render(index), index), self.jpeg_quality)

    def _camera(self, frame: np.ndarray, index: int) -> np.ndarray:
        """The rendered view as the camera records it: through the light (a stop, a vignette), with its noise."""
        if self.light is not None:
            frame = (frame * self.light).astype(np.uint8)
        if not self.noise:
            return frame
        noise = np.random.default_rng(index).normal(0, self.noise, frame.shape).astype(np.float32)
        return np.clip(np.rint(frame + noise), 0, 255).astype(np.uint8)

    def _recorded(self, index: int) -> np.ndarray:
        """Frame ``index`` of the whole scan, rendered once in order, coded as H.264 and decoded back."""
        if self._recording is None:
            scratch = tempfile.TemporaryDirectory(prefix="slide_count_")
            video = Path(scratch.name) / "scan.mp4"
            width, height = self.frame_size
            command = ["ffmpeg", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{width}x{height}",
                       "-r", f"{self.fps:g}", "-i", "-", "-c:v", "libx264", "-crf", str(self.video_crf),
                       "-pix_fmt", "yuv420p", "-y", str(video)]
            with subprocess.Popen(command, stdin=subprocess.PIPE) as coder:
                for i in range(self.frame_count):
                    coder.stdin.write(self._camera(super().render(i), i).tobytes())
                coder.stdin.close()
            if coder.returncode:
                raise RuntimeError(f"ffmpeg could not record the scan (exit {coder.returncode})")
            self._recording, self._next_index = (scratch, cv2.VideoCapture(str(video))), 0
        capture = self._recording[1]
        if index != self._next_index:  # the stream reads in order; anything else seeks
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = capture.read()
        if not ok:
            raise RuntimeError(f"the recorded scan ends before frame {index}")
        self._next_index = index + 1
        return frame


def light_mask(frame: tuple[int, int], stop_frac: float = 0.0, vignette: float | tuple[float, ...] = 1.0,
               offset_frac: tuple[float, float] = (0.0, 0.0), soft_px: float = 4.0) -> np.ndarray | None:
    """The share of the light reaching each pixel, (h, w, 1 or 3) float32 to multiply a BGR frame by; None: all.

    ``stop_frac``: an eyepiece camera's round view, a disc that many frame heights across, dark outside, its rim
    ``soft_px`` wide (0: none). ``vignette``: the brightness left at the frame's corners by a fall-off with the
    square of the distance from the centre (an unaligned condenser, a camera adapter's vignetting; 1: even), or
    three, red, green and blue's (a phone camera's lens shading, whose fall-off changes the colour too).
    ``offset_frac``: both centred that share of the frame height right and down of the frame's centre (a
    decentred eyepiece or lamp; a vignette then falls off as a gradient across the view)."""
    shares = np.atleast_1d(np.asarray(vignette, np.float32))[::-1]  # RGB as given, BGR as drawn
    if not stop_frac and np.all(shares == 1.0):
        return None
    width, height = frame
    y, x = np.mgrid[:height, :width].astype(np.float32)
    radius = np.hypot(x - (width - 1) / 2 - offset_frac[0] * height, y - (height - 1) / 2 - offset_frac[1] * height)
    fall_off = (radius / np.hypot(width / 2, height / 2))[..., None] ** 2
    light = np.clip(1 - (1 - shares) * fall_off, 0, 1)
    if stop_frac:
        light *= np.clip((stop_frac * height / 2 - radius) / soft_px + 0.5, 0, 1)[..., None]
    return light.astype(np.float32)


def scan_scope(bccd: str | Path, fields: list[str], speed: float, seed: int, *, tile: tuple[int, int] = (320, 240),
               border: int = 80, row_step: float = 0.4, defects: float = 0.01,
               stain: str = "none", zoom: float = 1.0, frame: tuple[int, int] = FRAME,
               jpeg_quality: int = 0, video_crf: int = 0, field_stop: float = 0.0,
               vignette: float | tuple[float, ...] = 1.0,
               light_offset: tuple[float, float] = (0.0, 0.0), noise: float = 0.0) -> VirtualMicroscope:
    """The benchmark's slide (``fields`` tiled, a plain border) scanned at ``speed`` px per frame, with
    2 px of hand jitter and ``defects`` of the frames blurred, streaked or dark (``seed`` draws both),
    the slide drawn with ``stain`` (one of ``STAINS``) and seen ``zoom`` times larger (another camera
    adapter or objective: the slide enlarged), through a camera of ``frame`` (width, height) pixels that
    sends JPEG frames of ``jpeg_quality`` (0: none), or recorded as H.264 at ``video_crf`` (0: not), seen
    through a round field stop ``field_stop`` of the frame height across (0: none), lit evenly or with
    ``vignette`` of the light left at the corners, both centred ``light_offset`` off the frame's (``light_mask``),
    with the camera's ``noise`` (Gaussian, in 8-bit levels; 0: none)."""
    base = VirtualMicroscope(bccd, fields=fields, tile_size=tile, num_frames=1, border_px=border)
    size = (round(base.mosaic.shape[1] * zoom), round(base.mosaic.shape[0] * zoom))
    path = serpentine_scan(size, frame, speed, row_step_frac=row_step, jitter_px=2.0, seed=seed)
    scope = CompressedMicroscope(bccd, fields=fields, tile_size=tile, path=path, seed=seed, border_px=border,
                                 defects=defect_frames(len(path), defects, seed), frame_size=frame)
    scope.jpeg_quality, scope.video_crf = jpeg_quality, video_crf
    scope.light, scope.noise = light_mask(frame, field_stop, vignette, light_offset), noise
    if stain != "none":  # the mosaic is BGR, the shifts take RGB
        # Imported here: synthetic_labs loads TensorFlow, which a plain count (and frame_checks.py) need not.
        from synthetic_labs import shift_image  # benchmarks/ is on sys.path when run as a script

        rgb = cv2.cvtColor(scope.mosaic, cv2.COLOR_BGR2RGB)
        scope.mosaic = cv2.cvtColor(shift_image(rgb, stain), cv2.COLOR_RGB2BGR)
    if zoom != 1.0:  # the truth boxes and the border grow with it; callers zoom the tile size (zoomed_tile)
        # Shrinking averages as a lower magnification does (cubic would alias); enlarging is bicubic.
        scope.mosaic = cv2.resize(scope.mosaic, size, interpolation=cv2.INTER_AREA if zoom < 1 else cv2.INTER_CUBIC)
        scope._cells = scope._cells * np.float32(zoom)
        scope.border_px = border * zoom
    return scope


def zoomed_tile(tile: tuple[int, int], zoom: float) -> tuple[float, float]:
    """A tile's size on the slide seen ``zoom`` times larger (``scan_scope``)."""
    return tile[0] * zoom, tile[1] * zoom


def defect_frames(n: int, share: float, seed: int) -> dict[int, str]:
    rng = np.random.default_rng(seed)
    frames = rng.choice(np.arange(10, n), size=int(share * n), replace=False)
    return {int(i): str(rng.choice(["blur", "motion", "dark"])) for i in frames}


def whole_in(box: np.ndarray, view_xy: np.ndarray, frame: tuple[int, int] = FRAME) -> bool:
    """The annotated box lies in the frame, but for VISIBLE_SLACK of its width or height (loose boxes)."""
    x, y = view_xy
    slack_x, slack_y = VISIBLE_SLACK * (box[2] - box[0]), VISIBLE_SLACK * (box[3] - box[1])
    return (box[0] - x > -slack_x and box[1] - y > -slack_y
            and box[2] - x < frame[0] + slack_x and box[3] - y < frame[1] + slack_y)


def cut_by_tile(box: np.ndarray, tile: tuple[int, int], border: int) -> bool:
    """The annotated box reaches its tile's edge: the cell is cut in the slide itself."""
    x1, y1, x2, y2 = box - border
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = (cx // tile[0]) * tile[0], (cy // tile[1]) * tile[1]
    return x1 <= left + 1 or y1 <= top + 1 or x2 >= left + tile[0] - 1 or y2 >= top + tile[1] - 1


def overhang(box: np.ndarray, view_xy: np.ndarray, frame: tuple[int, int] = FRAME) -> float:
    """How far (pixels) the annotated box reaches beyond the frame beyond its VISIBLE_SLACK; 0 when whole."""
    x, y = view_xy
    slack_x, slack_y = VISIBLE_SLACK * (box[2] - box[0]), VISIBLE_SLACK * (box[3] - box[1])
    return float(max(0.0, x - box[0] - slack_x, y - box[1] - slack_y,
                     box[2] - x - frame[0] - slack_x, box[3] - y - frame[1] - slack_y))


def never_clear(boxes: np.ndarray, path: np.ndarray, good: list[int], margin_px: float,
                frame: tuple[int, int] = FRAME) -> np.ndarray:
    """Per annotated box: True when no good frame of the scan holds it ``margin_px`` clear of every edge.

    Such a cell can only be counted when its located box is smaller than its annotated one: a
    wider edge margin needs scan rows that overlap more.
    """
    views = path[good]
    return np.array([not ((box[0] - views[:, 0] > margin_px) & (box[1] - views[:, 1] > margin_px)
                          & (box[2] - views[:, 0] < frame[0] - margin_px)
                          & (box[3] - views[:, 1] < frame[1] - margin_px)).any() for box in boxes])


def margin_geometry(scope: VirtualMicroscope, tile: tuple[int, int], fractions: list[float], config) -> dict:
    """For each edge-margin fraction, how many countable cells the scan never shows that far clear of the edges.

    The cell diameter is the stream's own estimate, the median over every 100th good frame.
    """
    path = np.array([scope._viewport(i) for i in range(scope.frame_count)])
    good = [i for i in range(len(path)) if i not in scope._defects]
    diameter = float(np.median([cell_diameter_px(cv2.cvtColor(scope.render(i), cv2.COLOR_BGR2RGB), config.locator)
                                for i in good[::100]]))
    boxes = scope.all_cells.boxes_xyxy
    frame = scope.frame_size
    countable = [not cut_by_tile(box, tile, scope.border_px) and any(whole_in(box, path[i], frame) for i in good)
                 for box in boxes]
    return {"diameter_px": round(diameter, 1), "countable": int(np.sum(countable)),
            "never_clear": {f"{fraction:g}": int(never_clear(boxes[countable], path, good, fraction * diameter,
                                                             frame).sum())
                            for fraction in fractions}}


def scale_along_scan(scope: VirtualMicroscope, fields: list[str], bccd: Path, config, every: int = 10) -> dict:
    """The stream's per-frame cell scale along the scan against the same fields' scale measured whole.

    ``cell_diameter_px`` (what ``RunningCellScale`` takes its median of) on every ``every``-th good frame,
    on each field's whole BCCD image, and the annotated cells' size (square root of the box area), as
    5th / 25th / 50th / 75th / 95th percentiles in pixels. A slide tiled from small crops around white cells
    shows few whole red cells a frame (most are cut by the crops' edges), and the red-cell ruler reads low on it.
    With ``--zoom`` the scan's figures are in the enlarged frame's pixels, the fields' in their own.
    """
    good = [i for i in range(scope.frame_count) if i not in scope._defects][::every]
    along = [cell_diameter_px(cv2.cvtColor(scope.render(i), cv2.COLOR_BGR2RGB), config.locator) for i in good]
    whole = [cell_diameter_px(cv2.cvtColor(cv2.imread(str(bccd / "JPEGImages" / f"{name}.jpg")), cv2.COLOR_BGR2RGB),
                              config.locator) for name in fields]
    boxes = scope.all_cells.boxes_xyxy
    sizes = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    quantiles = (5, 25, 50, 75, 95)
    return {"percentiles": list(quantiles), "frames": len(along),
            "along_scan_px": np.percentile(along, quantiles).round(1).tolist(),
            "fields_whole_px": np.percentile(whole, quantiles).round(1).tolist(),
            "annotated_cells_px": np.percentile(sizes, quantiles).round(1).tolist()}


def save_cut_view(image_bgr: np.ndarray, located: np.ndarray, annotated: np.ndarray, path: Path) -> None:
    """The frame a cell was first classified in while its annotated box reached beyond it, for a look:
    the locator's box green, the annotation white. Is the cell cut, or only its annotation?"""
    image = image_bgr.copy()
    for box, colour in ((annotated, (255, 255, 255)), (located, (0, 200, 0))):
        cv2.rectangle(image, tuple(int(round(v)) for v in box[:2]), tuple(int(round(v)) for v in box[2:]), colour, 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)


def shares(labels: list[int]) -> np.ndarray:
    """Percent of each of the four classes among the labels that are one of them (the differential)."""
    four = np.array([label for label in labels if 0 <= label < len(CLASS_NAMES)])
    return np.array([100 * float(np.mean(four == k)) if len(four) else 0.0 for k in range(len(CLASS_NAMES))])


def tv_points(truth_share: np.ndarray, counted_share: np.ndarray) -> float:
    """Total-variation distance of two differentials given in percent: points of the count misplaced."""
    return round(0.5 * float(np.abs(truth_share - counted_share).sum()), 2)


def reviewed(cells: list[list], checked: list[bool]) -> list[int]:
    """The counted labels after a technician corrects the ``checked`` cells.

    ``cells``: [label, confidence, annotated class] per counted cell (``counted_cells`` of the
    report); a checked cell takes its annotated class, "other" where it is no annotated cell
    (-1: which keeps it out of the differential) and keeps its label where the class is not known.
    """
    return [(label if truth is None else truth if truth >= 0 else OTHER_ID) if check else label
            for (label, _, truth), check in zip(cells, checked)]


def run_speed(scope: VirtualMicroscope, pipeline: StreamPipeline, out: Path, tile: tuple[int, int],
              fields: list[str]) -> dict:
    """One scan through the stream, scored against the annotated cells (``fields``: the slide's, in tile order)."""
    truth = scope.all_cells
    path = np.array([scope._viewport(i) for i in range(scope.frame_count)])
    good = [i for i in range(len(path)) if i not in scope._defects]
    frame_size = scope.frame_size  # (on_frame's `frame` is the stream's)
    countable = np.array([not cut_by_tile(box, tile, scope.border_px) and any(whole_in(box, path[i], frame_size)
                                                                              for i in good)
                          for box in truth.boxes_xyxy])
    first_seen: dict[int, tuple[int, np.ndarray, float]] = {}  # track -> (truth cell, box, truth's px outside then)
    # track -> whether a view its label rests on (TrackClassifier.voted_frames) cut its annotated box
    rests_on_cut_view: dict[int, bool] = {}
    votes = pipeline.track_classifier

    def on_frame(frame, _scene, detections):
        view = path[frame.index]
        for box, track, label in zip(detections.boxes_xyxy, detections.track_id, detections.label_id):
            if int(label) != PARTIAL_ID and int(track) not in first_seen:
                slide_box = box + np.array([*view, *view], np.float32)
                ious = iou_matrix(slide_box[None], truth.boxes_xyxy)[0]
                j = int(ious.argmax()) if len(ious) and ious.max() >= 0.3 else -1
                first_seen[int(track)] = (j, slide_box, overhang(truth.boxes_xyxy[j], view, frame_size)
                                                if j >= 0 else 0.0)
                if first_seen[int(track)][2] > 0:
                    save_cut_view(frame.image_bgr, box, truth.boxes_xyxy[j] - np.array([*view, *view]),
                                  out / f"cut_view_frame{frame.index}_track{int(track)}_cell{j}.jpg")
        for track in votes.last_votes:  # the kept views change only when a track votes
            j = first_seen.get(track, (-1,))[0]
            if j >= 0:
                rests_on_cut_view[track] = any(overhang(truth.boxes_xyxy[j], path[f], frame_size) > 0
                                               for f in votes.voted_frames(track))

    started = time.perf_counter()
    summary = run_stream(scope, pipeline, out, progress=True, on_frame=on_frame)
    wall = time.perf_counter() - started
    counter = pipeline.counter
    counted = [t for t in first_seen if counter.label_of(t) is not None]
    matched = [first_seen[t][0] for t in counted if first_seen[t][0] >= 0]
    recounts = len(matched) - len(set(matched))
    truth_labels = truth.label_id[countable]
    known = truth_labels[truth_labels >= 0]
    truth_share = np.array([(known == k).mean() * 100 for k in range(len(CLASS_NAMES))])
    counted_share = np.array([summary["percent"][name] for name in CLASS_NAMES])
    agree = [counter.label_of(t) == truth.label_id[first_seen[t][0]] for t in counted
             if first_seen[t][0] >= 0 and truth.label_id[first_seen[t][0]] >= 0]
    n_countable = int(countable.sum())
    cells = []  # per counted cell: label, the label's mean vote, its annotated class (-1: none; None: not known)
    for t in counted:
        j = first_seen[t][0]
        annotated = -1 if j < 0 else int(truth.label_id[j]) if truth.label_id[j] >= 0 else None
        cells.append([counter.label_of(t), round(counter.confidence_of(t), 4), annotated])
    check_below = pipeline.counter.check_below  # the review page's "check" mark (stream.check_below)
    checked = [confidence < check_below for _, confidence, _ in cells]
    after = reviewed(cells, checked)
    return {
        "frames": summary["frames"], "countable": n_countable, "partial_in_truth": int((~countable).sum()),
        "counted": summary["cells"], "count_error_pct": round(100 * (summary["cells"] - n_countable) / n_countable, 2),
        "recounts": recounts, "not_a_cell": sum(1 for t in counted if first_seen[t][0] < 0),
        "missed": int(len(set(np.flatnonzero(countable)) - set(matched))),
        "counted_from_cut_view": sum(1 for t in counted if first_seen[t][2] > 0),
        "cut_view_overhang_px": sorted(round(first_seen[t][2], 1) for t in counted if first_seen[t][2] > 0),
        # Clear views outvote those near the edge: cells whose final label still rests on a cut view.
        "label_from_cut_view": sum(1 for t in counted if rests_on_cut_view.get(t, False)),
        # Which cells those are: the BCCD field (one annotated cell per tile) and the label given.
        "label_from_cut_view_cells": [
            {"field": fields[first_seen[t][0] % len(fields)], "label": name_of(counter.label_of(t)),
             "annotated": name_of(int(truth.label_id[first_seen[t][0]]))}
            for t in counted if rests_on_cut_view.get(t, False)],
        "partial_counted_apart": summary["counts"]["partial"],
        # Counted cells whose crops were given the training labs' plasma or colours (hv.stain).
        "recoloured": summary["recoloured"],
        "differential_tv_points": tv_points(truth_share, counted_share),
        "truth_percent": dict(zip(CLASS_NAMES, truth_share.round(2).tolist())), "percent": summary["percent"],
        "label_agreement": round(float(np.mean(agree)), 4) if agree else None,
        # A technician who corrects every cell the review page marks "check".
        "after_review": {"check_below": check_below, "checked": sum(checked),
                         "changed": sum(a != c[0] for a, c in zip(after, cells)),
                         "differential_tv_points": tv_points(truth_share, shares(after))},
        "frames_skipped": summary["frames_skipped"], "regions": summary["regions"],
        "replay_fps": round(summary["frames"] / wall, 1), "ms_per_frame": summary["ms_per_frame"],
        "counted_boxes": [first_seen[t][1].round(1).tolist() for t in counted],
        # Per counted cell, in the order of counted_boxes: its label, the label's mean vote and its annotated
        # class (-1: no annotated cell; null: class not known), for benchmarks/review_effort.py.
        "counted_cells": cells,
    }


def draw(scope: VirtualMicroscope, results: dict, path: Path) -> None:
    """The slide at 1/4 size: annotated cells in white, each speed's counted cells as coloured dots."""
    scale = 0.25
    image = cv2.resize(scope.mosaic, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    for box in scope.all_cells.boxes_xyxy * scale:
        cv2.rectangle(image, tuple(int(v) for v in box[:2]), tuple(int(v) for v in box[2:]), (255, 255, 255), 1)
    colours = [(0, 0, 255), (0, 160, 255), (0, 200, 0), (255, 120, 0), (200, 0, 200), (0, 0, 0)]
    for k, (speed, result) in enumerate(results.items()):
        for box in np.array(result["counted_boxes"]).reshape(-1, 4) * scale:
            centre = (int((box[0] + box[2]) / 2) + 4 * k - 8, int((box[1] + box[3]) / 2))
            cv2.circle(image, centre, 3, colours[k % len(colours)], -1)
        cv2.putText(image, f"{speed} px/frame", (8, 18 + 16 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    colours[k % len(colours)], 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--bccd", default=str(BCCD))
    parser.add_argument("--speeds", type=float, nargs="+", default=[4, 8, 12, 16, 24])
    parser.add_argument("--cells", type=int, default=100)
    parser.add_argument("--tile", type=int, nargs=2, default=[320, 240])
    parser.add_argument("--border", type=int, default=80, help="plain background around the slide, in pixels")
    parser.add_argument("--defects", type=float, default=0.01, help="share of frames blurred, streaked or dark")
    parser.add_argument("--row-step", type=float, default=0.4,
                        help="rows this share of the frame height apart (every cell whole, with a margin, in a row)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--not-in", metavar="PART",
                        help="only fields without a copy in this part of blood-cells/, e.g. blood-cells/TRAIN: "
                             "cells a model trained on it never saw")
    parser.add_argument("--stain", choices=STAINS, default="none",
                        help="draw the slide as another lab's stain or lamp would (synthetic_labs.py's shifts)")
    parser.add_argument("--zoom", type=float, default=1.0,
                        help="see the slide this many times larger (another adapter or objective; below 1: smaller)")
    parser.add_argument("--frame-size", type=int, nargs=2, default=list(FRAME), metavar=("W", "H"),
                        help="the camera's frame in pixels (e.g. 1920 1080: an HD camera)")
    parser.add_argument("--jpeg-quality", type=int, default=0, metavar="Q",
                        help="the camera sends JPEG frames of this quality (1-100; 0: none), as an MJPG camera does")
    parser.add_argument("--video-crf", type=int, default=0, metavar="C",
                        help="replay the scan from an H.264 recording of it (ffmpeg libx264 at this CRF, 1-51; "
                             "0: frames as rendered), as a recorded video is")
    parser.add_argument("--field-stop", type=float, default=0.0, metavar="D",
                        help="see the slide through a round field stop D x the frame height across, dark outside "
                             "(an eyepiece camera or a phone adapter; 0: the whole frame)")
    parser.add_argument("--vignette", type=float, nargs="+", default=[1.0], metavar="V",
                        help="light uneven: V of the centre's brightness left at the frame's corners (a condenser "
                             "out of alignment, an adapter's vignetting; 1: even), or three: red's, green's and "
                             "blue's (a phone camera's lens shading, which tints the corners)")
    parser.add_argument("--noise", type=float, default=0.0, metavar="S",
                        help="the camera's noise: Gaussian, S levels of 255 standard deviation, new each frame (a dim "
                             "view at a high gain; 0: none)")
    parser.add_argument("--light-offset", type=float, nargs=2, default=[0.0, 0.0], metavar=("DX", "DY"),
                        help="the field stop and the vignette centred this share of the frame height right and down "
                             "of the frame's centre (a decentred eyepiece or lamp)")
    parser.add_argument("--out", default=str(REPO / "out" / "slide_count"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=NUMBER",
                        help="config values to try, e.g. stream.edge_margin_frac=0.2")
    parser.add_argument("--margin-geometry", type=float, nargs="+", metavar="FRACTION",
                        help="only count, for these edge margins (cell diameters), the countable cells the scan "
                             "never shows that far clear of the frame edges (no stream run; seconds)")
    parser.add_argument("--scale-along-scan", action="store_true",
                        help="only measure the cell scale on every 10th frame of the scan and on the same fields "
                             "whole (no stream run; a minute)")
    args = parser.parse_args()
    if args.margin_geometry and min(args.margin_geometry) < 0:
        parser.error("--margin-geometry fractions must be 0 or more")
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config)
    tried = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:  # a TOML number: "9" stays an integer (stream.scale_window), "0.3" a float
            tried[key] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parser.error(f"--set {item!r}: expected KEY=NUMBER, e.g. stream.edge_margin_frac=0.2")
    try:
        config = override(config, **{"stream.target_count": 0, **tried})  # count the whole slide
    except KeyError as error:
        parser.error(f"--set: no config section {error.args[0]!r} (sections: {', '.join(dataclasses.asdict(config))})")
    except ConfigError as error:
        parser.error(f"--set: {error}")
    exclude = originals_in(args.not_in) if args.not_in else set()
    fields = choose_fields(Path(args.bccd), args.cells, tuple(args.tile), args.seed, exclude)
    if args.zoom <= 0:
        parser.error("--zoom must be above 0")
    if min(args.frame_size) < 64:
        parser.error("--frame-size: expected a width and a height of 64 pixels or more")
    frame = tuple(args.frame_size)
    if not 0 <= args.jpeg_quality <= 100:
        parser.error("--jpeg-quality: expected 1-100, or 0 for frames as rendered")
    if not 0 <= args.video_crf <= 51:
        parser.error("--video-crf: expected 1-51, or 0 for frames as rendered")
    if len(args.vignette) not in (1, 3) or not all(0 < v <= 1 for v in args.vignette):
        parser.error("--vignette: expected the corners' share of the centre's light (one, or red, green and blue's), "
                     "above 0 and at most 1")
    vignette = args.vignette[0] if len(args.vignette) == 1 else tuple(args.vignette)
    if args.video_crf and (args.jpeg_quality or not shutil.which("ffmpeg")):
        parser.error("--video-crf: needs ffmpeg on PATH, and no --jpeg-quality (one coding at a time)")
    tile = zoomed_tile(tuple(args.tile), args.zoom)  # on the slide as the stream sees it
    if args.scale_along_scan:  # the slide's layout does not depend on the speed: the slowest scan's frames
        scope = scan_scope(args.bccd, fields, min(args.speeds), args.seed, tile=tuple(args.tile), border=args.border,
                           row_step=args.row_step, defects=args.defects, stain=args.stain, zoom=args.zoom,
                           frame=frame, jpeg_quality=args.jpeg_quality)
        result = scale_along_scan(scope, fields, Path(args.bccd), config)
        (out / "scale_along_scan.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result))
        return
    classifier = None if args.margin_geometry else load_classifier(args.model)
    results, scope = {}, None
    for speed in args.speeds:
        scope = scan_scope(args.bccd, fields, speed, args.seed, tile=tuple(args.tile), border=args.border,
                           row_step=args.row_step, defects=args.defects, stain=args.stain, zoom=args.zoom,
                           frame=frame, jpeg_quality=args.jpeg_quality, video_crf=args.video_crf,
                           field_stop=args.field_stop, vignette=vignette, light_offset=tuple(args.light_offset),
                           noise=args.noise)
        if args.margin_geometry:
            results[f"{speed:g}"] = margin_geometry(scope, tile, args.margin_geometry, config)
            print(json.dumps({f"{speed:g} px/frame": results[f"{speed:g}"]}), flush=True)
            continue
        result = run_speed(scope, StreamPipeline(classifier, config), out / f"speed_{speed:g}", tile, fields)
        print(json.dumps({k: v for k, v in result.items() if k not in ("counted_boxes", "counted_cells")}), flush=True)
        results[f"{speed:g}"] = result
    if args.margin_geometry:
        (out / "margin_geometry.json").write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {out / 'margin_geometry.json'}")
        return
    report = {"model": str(args.model), "config_changes": tried, "not_in": args.not_in, "stain": args.stain,
              "zoom": args.zoom, "frame_size": list(frame), "jpeg_quality": args.jpeg_quality,
              "video_crf": args.video_crf, "field_stop": args.field_stop, "vignette": vignette,
              "light_offset": args.light_offset, "noise": args.noise,
              "fields": fields, "tile": args.tile,
              "border": args.border, "defect_share": args.defects, "speeds_px_per_frame": results}
    (out / "slide_count.json").write_text(json.dumps(report, indent=1) + "\n")
    draw(scope, results, out / "slide_count.png")
    print(f"wrote {out / 'slide_count.json'} and {out / 'slide_count.png'}")


if __name__ == "__main__":
    main()
