"""A round field of view (an eyepiece camera, a phone adapter): the stop's shadow is found and left out."""

import cv2
import numpy as np

from hv.config import Config
from hv.field_of_view import field_of_view, small_grey
from stream.detections import Detections, mark_cut_cells
from stream.frame_quality import OUT_OF_FOCUS, FrameQuality
from stream.motion import StageMotion
from tests.stream.test_slide_count import FRAME_H, FRAME_W, make_slide


def through_stop(frame: np.ndarray, diameter: float = FRAME_H) -> np.ndarray:
    """``frame`` seen through a round field stop ``diameter`` pixels across, centred, black outside."""
    y, x = np.mgrid[: frame.shape[0], : frame.shape[1]]
    radius = np.hypot(x - (frame.shape[1] - 1) / 2, y - (frame.shape[0] - 1) / 2)
    light = np.clip(diameter / 2 - radius + 0.5, 0, 1)[..., None]
    return (frame * light).astype(np.uint8)


def grey(frame: np.ndarray) -> np.ndarray:
    return small_grey(frame, Config().stream.motion_width_px)


def test_the_stop_is_found_and_a_whole_frame_or_a_dark_object_inside_is_not_one():
    frame = make_slide()[:FRAME_H, :FRAME_W].copy()
    assert field_of_view(grey(frame)) is None
    view = field_of_view(grey(through_stop(frame)))
    assert view.stop[0, 0] and view.stop[-1, -1] and not view.stop[view.stop.shape[0] // 2, view.stop.shape[1] // 2]
    assert view.taper[0, 0] == 0 and view.taper[view.taper.shape[0] // 2, view.taper.shape[1] // 2] == 1
    inked = frame.copy()
    cv2.circle(inked, (FRAME_W // 2, FRAME_H // 2), 20, (0, 0, 0), -1)  # a black speck inside the view
    assert field_of_view(grey(inked)) is None


def test_a_cell_the_stop_may_cut_is_not_whole():
    view = field_of_view(grey(through_stop(make_slide()[:FRAME_H, :FRAME_W].copy())))
    boxes = np.array([[140, 100, 180, 140],  # the view's centre
                      [50, 20, 90, 60]], np.float32)  # on the rim, top left
    detections = mark_cut_cells(Detections(boxes), (FRAME_W, FRAME_H), 8.0, view)
    assert detections.whole.tolist() == [True, False]
    assert mark_cut_cells(Detections(boxes), (FRAME_W, FRAME_H), 8.0).whole.tolist() == [True, True]  # no stop


def test_the_stage_motion_follows_the_slide_not_the_stop():
    """A pan of 8 px a frame over a pale smear seen through a stop: the rim stays put, the slide moves. Matched
    with the rim in, the estimate stays at 0 (the rim is the stronger pattern); without it, it follows the slide."""
    slide = make_slide().astype(np.float32)
    slide = np.clip(slide.mean() + 0.3 * (slide - slide.mean()), 0, 255).astype(np.uint8)  # a pale smear
    motion = StageMotion(Config().stream)
    for x in range(0, 161, 8):
        small = grey(through_stop(slide[:FRAME_H, x : x + FRAME_W]))
        position = motion.update(small, FRAME_W, field_of_view(small).taper)
    assert position.region == 0 and abs(position.x - 160) < 4 and abs(position.y) < 4


def test_focus_is_judged_inside_the_view():
    """The rim's sharp edge stays sharp when the slide blurs: only the lit view says the frame is soft."""
    slide, quality = make_slide(), FrameQuality(Config().stream)
    for x in range(0, 80, 8):
        frame = through_stop(slide[:FRAME_H, x : x + FRAME_W])
        assert quality.check(frame, grey(frame), field_of_view(grey(frame))).ok
    soft = through_stop(cv2.GaussianBlur(slide[:FRAME_H, 80 : 80 + FRAME_W], (0, 0), 6))
    assert quality.check(soft, grey(soft), field_of_view(grey(soft))).reason == OUT_OF_FOCUS
