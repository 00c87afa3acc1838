"""The frame check that skips a camera's frames when they are too compressed to classify from."""

import dataclasses
import json

import cv2
import numpy as np
import pytest

from hv import cli
from hv.config import Config
from hv.field_of_view import small_grey
from stream.detections import Frame
from stream.frame_quality import TOO_COMPRESSED, FrameQuality, mostly_skipped
from stream.pipeline import StreamPipeline
from tests.conftest import SAMPLES
from tests.hv.test_jpeg_blocks import coded, frame
from tests.stream.fakes import FixedClassifier


def check(quality: FrameQuality, image: np.ndarray):
    return quality.check(image, small_grey(image, 320))


def test_frames_of_a_camera_set_too_low_are_skipped_and_the_run_says_what_to_do():
    quality = FrameQuality(Config().stream)
    reports = [check(quality, coded(frame(), 15)) for _ in range(12)]
    assert all(r.reason == TOO_COMPRESSED for r in reports)  # read on the first frame, then one in ten
    assert quality.jpeg_quality == pytest.approx(15, abs=1.5)
    line = mostly_skipped({TOO_COMPRESSED: 12}, 12, quality.jpeg_quality)
    assert line.startswith("12 of 12 frames not classified: JPEG too compressed;") and "30 or more" in line
    assert line.endswith("(its frames read as quality 15)")

    fine = FrameQuality(Config().stream)
    assert all(check(fine, coded(frame(), 40)).ok for _ in range(12))
    off = FrameQuality(dataclasses.replace(Config().stream, jpeg_quality_min=0.0))
    assert check(off, coded(frame(), 15)).ok and off.jpeg_quality is None  # the check turned off: no read


def test_the_overlay_says_what_the_camera_reads_and_what_to_set():
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    pipeline.process(Frame(coded(frame(), 15), 0, 0.0, 0.0))
    assert pipeline.status == "frame skipped: JPEG too compressed (quality 15; set 30 or more)"
    assert pipeline.summary()["frames_skipped"][TOO_COMPRESSED] == 1


def test_one_odd_read_does_not_decide():
    """The camera's setting is judged by the median of its recent reads."""
    quality = FrameQuality(Config().stream)
    for index in range(41):  # five reads (frames 0, 10 ... 40): four at 40, then the latest at 10
        check(quality, coded(frame(), 10 if index == 40 else 40))
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
    said = capsys.readouterr().err
    assert "4 of 4 frames not classified: JPEG too compressed; set the camera's JPEG" in said
    assert "(its frames read as quality 12)" in said
