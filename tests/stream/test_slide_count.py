"""A moving slide, made in the test: each cell counted once, only from a whole view, bad frames skipped."""

import csv
import dataclasses
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from hv.config import Config
from hv.field_of_view import small_grey
from stream.detections import Frame
from stream.frame_quality import MOTION_BLUR, OUT_OF_FOCUS, TOO_DARK, FrameQuality, mostly_skipped
from stream.motion import StageMotion
from stream.pipeline import StreamPipeline, motion_lost_line, run_stream
from stream.virtual_microscope import VirtualMicroscope
from tests.conftest import draw_field
from tests.stream.fakes import FixedClassifier

FRAME_W, FRAME_H = 320, 240
FIELDS = Path(__file__).resolve().parent.parent / "hv" / "fields"  # BCCD BloodImage_00240 (MIT; README there)
CELLS = 5


def make_slide(seed: int = 0) -> np.ndarray:
    """Five 240x280 fields side by side (BGR), one white cell each, with a fine texture fixed to the glass."""
    rng = np.random.default_rng(seed)
    slide = np.hstack([draw_field(rng, label=k % 4, width=240, height=280) for k in range(CELLS)])
    texture = cv2.GaussianBlur(rng.normal(0, 8, slide.shape[:2]).astype(np.float32), (0, 0), 1.5)
    slide = np.clip(slide + texture[..., None], 0, 255).astype(np.uint8)
    return cv2.cvtColor(slide, cv2.COLOR_RGB2BGR)


class SlideScan:
    """A source that shows ``slide`` through a 320x240 window at the given (x, y) offsets (one per frame)."""

    live = False
    fps = 30.0

    def __init__(self, slide: np.ndarray, path, edits=None):
        self.slide, self.path, self.edits = slide, np.round(path).astype(int), edits or {}
        self.name, self.frame_count = "synthetic slide", len(self.path)

    def __iter__(self):
        for index, (x, y) in enumerate(self.path):
            image = self.slide[y : y + FRAME_H, x : x + FRAME_W].copy()
            if index in self.edits:
                image = self.edits[index](image)
            yield Frame(image, index, index / self.fps, time.monotonic())

    def close(self):
        pass


def there_and_back(step: float = 8.0) -> np.ndarray:
    """(x, y) of a pan to the right end, then a step 40 px down and back along the slide."""
    forth = np.arange(0, CELLS * 240 - FRAME_W + 1, step)
    down = np.arange(0, 41, step)
    end = forth[-1]
    legs = [(forth, 0 * forth), (0 * down + end, down), (forth[::-1], 0 * forth + 40)]
    return np.concatenate([np.stack(leg, axis=1) for leg in legs])


def run(tmp_path, path, edits=None, **stream_changes):
    config = Config()
    config = dataclasses.replace(config, stream=dataclasses.replace(config.stream, target_count=0, **stream_changes))
    pipeline = StreamPipeline(FixedClassifier(image_size=32), config)
    summary = run_stream(SlideScan(make_slide(), path, edits), pipeline, tmp_path, progress=False)
    with (tmp_path / "cells.csv").open() as f:
        return summary, list(csv.DictReader(f))


def test_panning_back_over_the_slide_does_not_count_its_cells_again(tmp_path):
    summary, rows = run(tmp_path, there_and_back())
    assert summary["regions"] == 1  # the motion was never lost ...
    assert summary["motion_response"]["median"] > 0.3  # ... and was sure of itself
    assert summary["cells"] == CELLS  # five cells, although each was seen twice, going and coming back
    # The way back, 40 px lower (so each cell is elsewhere in the frame), shows the same track ids.
    half = len(there_and_back()) // 2
    going = {r["track_id"] for r in rows if int(r["frame"]) < half and r["whole"] == "1"}
    coming = {r["track_id"] for r in rows if int(r["frame"]) >= half and r["whole"] == "1"}
    assert coming == going


def test_a_cell_entering_at_the_edge_is_classified_once_it_is_whole(tmp_path):
    summary, rows = run(tmp_path, there_and_back()[: len(there_and_back()) // 2])
    assert summary["cells"] == CELLS
    for track in {r["track_id"] for r in rows}:
        track_rows = [r for r in rows if r["track_id"] == track]
        labelled = [r for r in track_rows if r["label"] != "partial"]
        # Never classified from a cut view: the first labelled row is a whole one.
        assert labelled and labelled[0]["whole"] == "1"
        assert all(r["whole"] == "0" for r in track_rows[: track_rows.index(labelled[0])])
    # The cells beyond the first frame enter cut at the right edge, and are shown as partial until whole.
    assert any(r["label"] == "partial" for r in rows)


def test_blurred_and_dark_frames_are_skipped_and_reported(tmp_path):
    path = there_and_back()[:60]
    edits = {30: lambda im: cv2.GaussianBlur(im, (0, 0), 6), 31: lambda im: (im * 0.1).astype(np.uint8)}
    summary, rows = run(tmp_path, path, edits)
    skipped = summary["frames_skipped"]
    assert skipped[OUT_OF_FOCUS] + skipped[MOTION_BLUR] == 1 and skipped[TOO_DARK] == 1
    assert sum(skipped.values()) == 2  # and no other frame
    assert not any(int(r["frame"]) in (30, 31) for r in rows)  # nothing located or counted from them
    assert summary["regions"] == 1  # the motion estimate waited for the next good frame


def test_the_stage_is_followed_through_a_run_of_soft_frames(tmp_path):
    # 26 soft frames in a row: the stage travels 208 px of a 320-px frame meanwhile, further than phase
    # correlation can measure between the good frames on either side (half a frame); a wrong position
    # there would count the cells of the way back again.
    soft = {i: (lambda im: cv2.GaussianBlur(im, (0, 0), 6)) for i in range(20, 46)}
    summary, _ = run(tmp_path, there_and_back(), soft)
    assert summary["frames_skipped"][OUT_OF_FOCUS] == 26
    assert summary["regions"] == 1 and summary["cells"] == CELLS


def test_stage_motion_follows_a_long_pan_and_says_when_it_is_lost():
    slide = make_slide()
    config = dataclasses.replace(Config().stream, motion_width_px=FRAME_W)
    motion = StageMotion(config)
    for x, y in there_and_back(step=6.0):
        position = motion.update(small_grey(slide[int(y) : int(y) + FRAME_H, int(x) : int(x) + FRAME_W], FRAME_W),
                                 FRAME_W)
        assert (position.x, position.y) == pytest.approx((x, y), abs=3.0)
    assert position.region == 0
    # Another place altogether (a jump): nothing in common with the keyframe or the last frame.
    texture = np.random.default_rng(9).normal(128, 40, (FRAME_H, FRAME_W, 3)).clip(0, 255).astype(np.uint8)
    lost = motion.update(small_grey(cv2.GaussianBlur(texture, (0, 0), 2), FRAME_W), FRAME_W)
    assert lost.new_region and lost.region == 1 and (lost.x, lost.y) == (0.0, 0.0)


@pytest.mark.parametrize("blurred", [6, 7, 8, 9])
def test_a_sharp_frame_after_one_badly_blurred_frame_keeps_the_stage(blurred):
    # A pan over a real BCCD field (shipped under tests/hv/fields) at 40 px a frame, one frame badly
    # blurred (the virtual microscope's "blur" defect). The soft frame is followed and may become the
    # keyframe; a sharp frame can fail to correlate with it (its fine detail is sensor noise), so the last
    # good frame must be tried too, or the motion is lost and the cells seen before are counted again
    # (with the keyframe alone, the blur at frame 9 lost it).
    config = Config().stream
    path = np.array([[10 + 40 * i, 0.0] for i in range(14)])
    scope = VirtualMicroscope(FIELDS, path=path, defects={blurred: "blur"}, seed=0)
    motion, quality = StageMotion(config), FrameQuality(config)
    regions = set()
    for index in range(len(path)):
        image = scope.render(index)
        grey = small_grey(image, config.motion_width_px)
        report = quality.check(image, grey)
        if report.ok:
            regions.add(motion.update(grey, image.shape[1]).region)
        else:
            assert index == blurred and report.reason == OUT_OF_FOCUS
            motion.follow(grey, image.shape[1])
    assert regions == {0}


def test_quality_names_the_reason():
    slide = make_slide()[:FRAME_H, :FRAME_W]
    quality = FrameQuality(Config().stream)
    for _ in range(10):
        assert quality.check(slide, small_grey(slide, 320)).ok
    streaked = cv2.blur(slide, (31, 1))
    assert quality.check(streaked, small_grey(streaked, 320)).reason == MOTION_BLUR
    soft = cv2.GaussianBlur(slide, (0, 0), 6)
    assert quality.check(soft, small_grey(soft, 320)).reason == OUT_OF_FOCUS
    cast = np.clip(slide * np.array([0.4, 1.0, 1.0]), 0, 255).astype(np.uint8)  # blue channel cut: yellow light
    assert quality.check(cast, small_grey(cast, 320)).reason == "colour cast"
    mono = cv2.cvtColor(cv2.cvtColor(slide, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)  # a monochrome camera
    assert quality.check(mono, small_grey(mono, 320)).reason == "no colour"


def test_a_run_whose_frames_mostly_failed_one_check_says_why_and_what_to_do():
    line = mostly_skipped({"too dark": 1, "no colour": 5}, 6)
    assert line.startswith("5 of 6 frames not classified: no colour;") and "colour camera" in line
    assert mostly_skipped({"too dark": 2, "no colour": 2}, 10) is None  # most frames were classified
    assert mostly_skipped({}, 0) is None


def test_a_jump_starts_a_new_region_and_the_overlay_says_so():
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    slide = make_slide()
    for index, x in enumerate(range(0, 40, 8)):
        pipeline.process(Frame(slide[:FRAME_H, x : x + FRAME_W].copy(), index, index / 30, time.monotonic()))
    assert pipeline.position.region == 0
    texture = np.random.default_rng(9).normal(150, 40, (FRAME_H, FRAME_W, 3)).clip(0, 255).astype(np.uint8)
    pipeline.process(Frame(cv2.GaussianBlur(texture, (0, 0), 1), 5, 5 / 30, time.monotonic()))  # sharp: not skipped
    assert pipeline.position.new_region and "stage motion lost" in pipeline.status
    assert pipeline.summary()["regions"] == 2
    # ... and the end of the run says so, with what it may have cost.
    assert motion_lost_line(pipeline.summary()).startswith("the stage motion was lost once (2 regions): a cell seen")
    assert motion_lost_line({"regions": 19}).startswith("the stage motion was lost 18 times (19 regions)")
    assert motion_lost_line({"regions": 1}) is None and motion_lost_line({}) is None


def test_an_unsure_match_with_the_keyframe_loses_to_a_sure_one_with_the_last_frame():
    """A JPEG camera's frames (tests/stream/jpeg_motion): the keyframe gives a false peak at response 0.23."""
    folder = Path(__file__).parent / "jpeg_motion"
    truth = json.loads((folder / "viewports.json").read_text())
    motion = StageMotion(Config().stream)
    start = None
    for name in ("key", "last", "current"):
        grey = cv2.imread(str(folder / f"{name}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        position = motion.update(grey, 640)
        start = start or (truth[name][0] - position.x, truth[name][1] - position.y)
        assert position.region == 0
        # Within 3 px of where the frame lies (the false peak put the current frame 300 px off).
        assert (position.x + start[0], position.y + start[1]) == pytest.approx(truth[name], abs=3.0)
