import json

import cv2
import numpy as np
import pytest

from hv import cli
from hv.config import Config
from stream.pipeline import StreamPipeline, run_stream
from stream.source_spec import open_source
from stream.sources import ImageFolderSource, SourceError
from stream.virtual_microscope import VirtualMicroscope
from tests.conftest import SAMPLES
from tests.stream.fakes import FixedClassifier
from tests.stream.test_pipeline import record


def test_hv_stream_on_the_virtual_microscope(tmp_path, tiny_model_path, capsys):
    out = tmp_path / "live"
    assert cli.main(["stream", "--source", "virtual", "--model", str(tiny_model_path), "--out", str(out),
                     "--max-frames", "8"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["complete"] and summary["cells"] >= 1
    assert summary["latency_ms"]["p95"] > 0


def test_hv_replay_writes_csv_summary_and_video(tmp_path, tiny_model_path):
    video = record(VirtualMicroscope(num_frames=12), tmp_path / "clip.avi")
    out = tmp_path / "replay"
    assert cli.main(["replay", str(video), "--model", str(tiny_model_path), "--out", str(out),
                     "--annotated-video"]) == 0
    assert json.loads((out / "summary.json").read_text())["frames"] == 12
    assert len((out / "cells.csv").read_text().splitlines()) > 12
    assert (out / "annotated.webm").stat().st_size > 0


def test_source_specs(tmp_path):
    with pytest.raises(SourceError, match="no camera, stream, video, folder or images called 'nothing-here'"):
        open_source("nothing-here")
    with pytest.raises(SourceError, match="unknown stream URL scheme"):
        open_source("gopher://x")
    assert isinstance(open_source(str(SAMPLES)), ImageFolderSource)
    assert isinstance(open_source("virtual", max_frames=2), VirtualMicroscope)


def test_unopenable_source_is_a_one_line_error(tmp_path, tiny_model_path, capsys):
    assert cli.main(["stream", "--source", str(tmp_path / "missing.mp4"), "--model", str(tiny_model_path)]) == 1
    assert "no camera, stream, video, folder or images" in capsys.readouterr().err


def test_frames_that_change_size_and_grayscale_frames(tmp_path):
    field = cv2.imread(str(SAMPLES / "BloodImage_00009.jpg"))
    cv2.imwrite(str(tmp_path / "a.png"), field)
    cv2.imwrite(str(tmp_path / "b.png"), cv2.resize(field, (320, 240)))
    cv2.imwrite(str(tmp_path / "c.png"), cv2.cvtColor(field, cv2.COLOR_BGR2GRAY))
    summary = run_stream(ImageFolderSource(tmp_path), StreamPipeline(FixedClassifier(), Config()),
                         tmp_path / "out", video=True, progress=False)
    assert summary["frames"] == 3 and summary["complete"]
    assert summary["frames_skipped"]["no colour"] == 1  # the greyscale frame: nothing to classify it by
    rows = (tmp_path / "out" / "cells.csv").read_text().splitlines()[1:]
    widths = {int(r.split(",")[5]) for r in rows[:2]}
    assert len(rows) >= 2 and len(widths) == 2  # boxes in each frame's own pixels
    assert np.isfinite(summary["fps"])
