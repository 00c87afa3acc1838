"""A camera's JPEG quality read back from its frames, and the frame check that skips frames too compressed."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from hv import cli
from hv.config import Config
from stream.frame_quality import TOO_COMPRESSED, FrameQuality, mostly_skipped
from stream.jpeg_blocks import jpeg_quality
from stream.motion import small_grey
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


def check(quality: FrameQuality, image: np.ndarray):
    return quality.check(image, small_grey(image, 320))


def test_frames_of_a_camera_set_too_low_are_skipped_and_the_run_says_what_to_do():
    quality = FrameQuality(Config().stream)
    reports = [check(quality, coded(frame(), 15)) for _ in range(12)]
    assert all(r.reason == TOO_COMPRESSED for r in reports)  # read on the first frame, then one in ten
    assert quality.jpeg_quality == pytest.approx(15, abs=1.5)
    line = mostly_skipped({TOO_COMPRESSED: 12}, 12)
    assert line.startswith("12 of 12 frames not classified: JPEG too compressed;") and "30 or more" in line

    fine = FrameQuality(Config().stream)
    assert all(check(fine, coded(frame(), 40)).ok for _ in range(12))
    off = FrameQuality(dataclasses.replace(Config().stream, jpeg_quality_min=0.0))
    assert check(off, coded(frame(), 15)).ok and off.jpeg_quality is None  # the check turned off: no read


def test_one_odd_read_does_not_decide():
    """The camera's setting is judged by the median of its recent reads."""
    quality = FrameQuality(Config().stream)
    for index in range(50):  # five reads: four at 40, one (the third) at 10
        check(quality, coded(frame(), 10 if index == 20 else 40))
    assert quality.jpeg_quality == pytest.approx(40, abs=1.5)
    assert check(quality, coded(frame(), 40)).ok


def test_hv_stream_from_a_camera_sending_blocky_frames_counts_nothing_and_says_why(tmp_path, tiny_model_path,
                                                                                  capsys):
    field = cv2.resize(cv2.imread(str(SAMPLES / "BloodImage_00009.jpg")), (320, 240), interpolation=cv2.INTER_AREA)
    folder = tmp_path / "camera"
    folder.mkdir()
    for index in range(4):
        cv2.imwrite(str(folder / f"{index}.jpg"), field, [cv2.IMWRITE_JPEG_QUALITY, 12])
    out = tmp_path / "out"
    assert cli.main(["stream", "--source", str(folder), "--model", str(tiny_model_path), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_skipped"][TOO_COMPRESSED] == 4 and summary["cells"] == 0
    assert summary["jpeg_quality"] == pytest.approx(12, abs=1.5)
    assert "4 of 4 frames not classified: JPEG too compressed; set the camera's JPEG" in capsys.readouterr().err
