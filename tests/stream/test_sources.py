import threading
import time

import cv2
import numpy as np
import pytest

from stream.sources import CameraSource, ImageFolderSource, SourceError, VideoFileSource
from tests.stream.fakes import FlakyCapture


def write_video(path, frames=10, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), 20 * i % 255, np.uint8)
        writer.write(image)
    writer.release()
    return path


def test_video_file_gives_every_frame_in_order_with_media_time(tmp_path):
    path = write_video(tmp_path / "v.avi")
    with VideoFileSource(path) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(10))
    assert frames[3].timestamp_s == pytest.approx(0.3)
    assert frames[0].image_bgr.shape == (120, 160, 3)
    with VideoFileSource(path, stride=3) as source:
        assert [f.index for f in source] == [0, 3, 6, 9]


def test_bad_video_files_are_named(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        VideoFileSource(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="junk.mp4: cannot read a frame"):
        VideoFileSource(junk)


def test_truncated_video_ends_cleanly(tmp_path):
    path = write_video(tmp_path / "v.avi", frames=30)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with VideoFileSource(path) as source:
        frames = list(source)
    assert 0 < len(frames) < 30


def test_folder_source_skips_bad_images_and_rejects_empty_folders(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20, 30), 128, np.uint8))  # grayscale files
    (tmp_path / "f1b.png").write_bytes(b"broken")
    source = ImageFolderSource(tmp_path)
    frames = list(source)
    assert [f.image_bgr.shape for f in frames] == [(20, 30, 3)] * 3
    assert source.skipped == [str(tmp_path / "f1b.png")]
    with pytest.raises(SourceError, match="no images"):
        ImageFolderSource(tmp_path / "*.jpg")


def test_camera_reconnects_after_a_dropped_feed():
    FlakyCapture.opened = 0
    source = CameraSource(0, backoff_s=0.01, capture_factory=lambda d: FlakyCapture(d, fail_after=3))
    seen = []
    deadline = time.monotonic() + 5
    while len(seen) < 5 and time.monotonic() < deadline:
        frame = source.read(timeout_s=0.5)
        if frame is not None:
            seen.append(frame.index)
    source.close()
    assert source.reconnects >= 1 and len(seen) >= 5
    assert source.read_fps is not None and source.read_fps > 0
    assert seen == sorted(seen)  # newest-frame semantics never go back in time


def test_camera_gives_up_after_bounded_reconnects_and_says_why():
    FlakyCapture.opened = 0
    source = CameraSource(1, max_reconnects=2, backoff_s=0.01,
                          capture_factory=lambda d: FlakyCapture(d, fail_after=1, refuse_reopen=True))
    frames = list(source)  # ends by itself
    assert len(frames) <= 1 and "lost after 2 reconnect attempts" in source.error
    source.close()


def test_unopenable_and_unknown_sources():
    with pytest.raises(SourceError, match="unknown stream URL scheme"):
        CameraSource("ftp://example/stream")
    with pytest.raises(SourceError, match="cannot open camera 3"):
        CameraSource(3, capture_factory=lambda d: _Closed())


class _Closed:
    def isOpened(self):  # noqa: N802
        return False

    def release(self):
        pass


class StallingCapture:
    """Gives one frame, then blocks in read() until ``unblock`` is set; records release() calls."""

    def __init__(self, device):
        self.unblock, self.in_read = threading.Event(), threading.Event()
        self.released_during_read = False
        self.released = False
        self.first = True
        StallingCapture.last = self

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return True

    def read(self):
        if self.first:
            self.first = False
            return True, np.full((48, 64, 3), 120, np.uint8)
        self.in_read.set()
        self.unblock.wait(30)
        self.in_read.clear()
        return False, None

    def release(self):
        self.released_during_read = self.released_during_read or self.in_read.is_set()
        self.released = True

    def get(self, prop):
        return 0


def test_stop_returns_within_a_second_on_a_stalled_source_and_the_reader_releases_it(tmp_path):
    from hv.config import Config
    from stream.live import LiveSession
    from tests.stream.fakes import FixedClassifier

    source = CameraSource(0, capture_factory=StallingCapture, max_reconnects=0)
    capture = StallingCapture.last
    session = LiveSession(source, FixedClassifier(), Config(), out_dir=tmp_path)
    assert capture.in_read.wait(5)  # the reader is now stuck in a read
    started = time.monotonic()
    session.stop()
    assert time.monotonic() - started < 1.5
    assert not session.running
    assert not capture.released  # never freed under a read in progress
    capture.unblock.set()  # the read returns: the reader thread, its owner, releases it
    source._thread.join(5)
    assert capture.released and not capture.released_during_read


def test_closing_a_live_session_removes_its_temporary_folder_only(tmp_path):
    from hv.config import Config
    from stream.live import LiveSession
    from stream.virtual_microscope import VirtualMicroscope
    from tests.stream.fakes import FixedClassifier

    own = LiveSession(VirtualMicroscope(num_frames=3), FixedClassifier(), Config())
    given = LiveSession(VirtualMicroscope(num_frames=3), FixedClassifier(), Config(), out_dir=tmp_path / "keep")
    for session in (own, given):
        session._thread.join(10)
        assert (session.out_dir / "summary.json").is_file()
        session.close()
    assert not own.out_dir.exists()  # the session's own temporary folder is gone
    assert (tmp_path / "keep" / "summary.json").is_file()  # a folder the caller named is kept
