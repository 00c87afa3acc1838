"""A real network stream on loopback (ffmpeg), killed and restarted mid-stream: the source reconnects
and cells.csv holds a row for every cell of every frame the pipeline received."""

import collections
import csv
import shutil
import socket
import subprocess
import threading
import time

import pytest

from hv.config import Config
from stream.pipeline import StreamPipeline, run_stream
from stream.sources import CameraSource
from stream.virtual_microscope import VirtualMicroscope
from tests.stream.fakes import FixedClassifier
from tests.stream.test_pipeline import record

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="Debian's ffmpeg is not installed (tests/run.sh installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(clip, port: int) -> subprocess.Popen:
    """ffmpeg plays ``clip`` in a loop at its own pace as MPEG-TS to the first client of tcp://127.0.0.1:port."""
    return subprocess.Popen(
        [FFMPEG, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip), "-c:v", "mpeg2video",
         "-q:v", "3", "-f", "mpegts", f"tcp://127.0.0.1:{port}?listen=1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def connect(url: str, deadline_s: float = 20.0) -> CameraSource:
    started = time.monotonic()
    while True:
        try:
            return CameraSource(url, timeout_s=3.0, backoff_s=0.2, max_reconnects=30)
        except Exception:
            if time.monotonic() - started > deadline_s:
                raise
            time.sleep(0.2)  # ffmpeg is not listening yet


def test_a_stream_that_dies_and_comes_back_is_followed_without_losing_rows(tmp_path):
    clip = record(VirtualMicroscope(num_frames=60), tmp_path / "clip.avi")
    port = free_port()
    server = serve(clip, port)
    source = connect(f"tcp://127.0.0.1:{port}")
    cells_per_frame: dict[int, int] = collections.Counter()
    restarted = threading.Event()

    def on_frame(frame, _scene, detections):
        cells_per_frame[frame.index] = len(detections)

    def kill_and_restart():
        nonlocal server
        while source.frames_read < 25:
            time.sleep(0.05)
        server.kill()  # the stream dies mid-way ...
        server.wait()
        time.sleep(1.0)
        server = serve(clip, port)  # ... and comes back on the same address
        restarted.set()

    chaos = threading.Thread(target=kill_and_restart, daemon=True)
    chaos.start()
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    try:
        summary = run_stream(source, pipeline, tmp_path / "out", progress=False, max_frames=70, on_frame=on_frame)
    finally:
        source.close()
        chaos.join(timeout=30)
        server.kill()
    assert restarted.is_set() and source.reconnects >= 1
    assert summary["frames"] == 70 and summary["complete"]  # frames kept coming after the restart
    with (tmp_path / "out" / "cells.csv").open() as f:
        rows = collections.Counter(int(r["frame"]) for r in csv.DictReader(f))
    assert rows == +collections.Counter(cells_per_frame)  # every cell of every received frame has its row
    assert sum(rows.values()) > 0
