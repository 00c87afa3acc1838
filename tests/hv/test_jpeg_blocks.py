"""A JPEG image's quality read back from its pixels (a camera's frames, an image file)."""

import cv2
import numpy as np
import pytest

from hv.jpeg_blocks import jpeg_quality
from tests.conftest import SAMPLES
from tests.stream.test_slide_count import FRAME_H, FRAME_W, make_slide


def coded(image: np.ndarray, quality: int) -> np.ndarray:
    """``image`` through a camera that sends JPEG at ``quality``."""
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_COLOR)


def frame() -> np.ndarray:
    return make_slide()[:FRAME_H, :FRAME_W].copy()


@pytest.mark.parametrize("quality", [10, 20, 30, 50, 70])
def test_the_quality_a_frame_was_coded_at_is_read_back(quality):
    assert jpeg_quality(coded(frame(), quality)) == pytest.approx(quality, abs=1.5)


def test_a_frame_cropped_after_coding_reads_the_same():
    """The 8 x 8 grid no longer starts at the corner: it is found, not assumed."""
    shifted = coded(make_slide()[:FRAME_H + 8, :FRAME_W + 8], 20)[5:, 3:]
    assert jpeg_quality(shifted) == pytest.approx(20, abs=1.5)


def test_a_real_field_reads_its_own_quality_and_the_camera_s_when_coded_again():
    field = cv2.imread(str(SAMPLES / "BloodImage_00009.jpg"))  # a BCCD field, saved at quality 75
    assert jpeg_quality(field) == pytest.approx(75, abs=1.5)
    assert jpeg_quality(coded(field, 15)) == pytest.approx(15, abs=1.5)  # the coarser step wins


def test_frames_never_coded_read_100_and_a_flat_frame_is_not_read():
    assert jpeg_quality(frame()) == 100.0
    assert jpeg_quality(coded(frame(), 95)) == 100.0  # steps too small to tell from the pixels' rounding
    assert jpeg_quality(np.full((FRAME_H, FRAME_W, 3), 200, np.uint8)) is None  # bare glass: nothing to read
    assert jpeg_quality(frame()[:16, :16]) is None


def test_a_drawn_frame_is_not_taken_for_a_coded_one():
    """Flat shapes without noise (a test card, an overlay) repeat a few coefficient values, which a large step
    would fit; a coded frame has no coefficient between the noise and its first step, a drawn one does."""
    card = np.full((240, 320, 3), (160, 170, 236), np.uint8)
    for x in range(20, 320, 40):
        for y in (20, 220):
            cv2.circle(card, (x, y), 17, (110, 110, 200), -1)
    cv2.circle(card, (160, 120), 45, (230, 170, 200), -1)
    assert jpeg_quality(card) == 100.0
