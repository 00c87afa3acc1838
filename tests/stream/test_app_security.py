"""What a page visitor may make the server open, and how many live sessions it runs: no browser needed."""

import time

import pytest

import stream.app as app_module
from hv.config import Config, ServeConfig
from stream.app import SessionLimit, SourcePolicy
from stream.sources import SourceError


@pytest.fixture
def opened(monkeypatch):
    """Records every CameraSource the app tries to open (nothing is really opened)."""
    calls = []

    class Recorder:
        def __init__(self, device):
            calls.append(device)
            self.name = str(device)

    monkeypatch.setattr(app_module, "CameraSource", Recorder)
    return calls


def _policy(tmp_path, **serve):
    return SourcePolicy(Config(serve=ServeConfig(**serve)))


def test_unlisted_cameras_and_urls_are_refused_before_anything_opens(tmp_path, opened):
    policy = _policy(tmp_path)
    assert policy.kinds() == ["virtual microscope"]
    for kind, value in (("camera", "0"), ("network stream", "http://169.254.169.254/latest/meta-data"),
                        ("network stream", "rtsp://10.0.0.5/cam"), ("server recording", "../../etc/passwd"),
                        ("file", "/etc/passwd")):
        with pytest.raises(SourceError, match="not offered by this server|unknown source kind"):
            policy.open(kind, value)
    assert opened == []


def test_listed_sources_open_and_nothing_else(tmp_path, opened):
    (tmp_path / "scan.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    policy = _policy(tmp_path, cameras=("0",), stream_urls=("rtsp://192.0.2.10/scope",), video_dir=str(tmp_path))
    assert policy.kinds() == ["virtual microscope", "camera", "network stream", "server recording"]
    assert policy.allowed["server recording"] == ["scan.mp4"]
    policy.open("camera", "0")
    policy.open("network stream", "rtsp://192.0.2.10/scope")
    assert opened == [0, "rtsp://192.0.2.10/scope"]
    with pytest.raises(SourceError, match="camera '1' is not offered by this server; choose one of 0"):
        policy.open("camera", "1")
    with pytest.raises(SourceError, match="not offered"):
        policy.open("network stream", "rtsp://192.0.2.10/scope/../other")
    with pytest.raises(SourceError, match="not offered"):
        policy.open("server recording", "notes.txt")
    assert len(opened) == 2


def test_live_sessions_are_capped_over_all_visitors():
    class Session:
        def __init__(self):
            self.running = True

        def idle_s(self):
            return 0.0

        def close(self):
            self.running = False

    limit = SessionLimit(2)
    first, second = limit.admit(Session), limit.admit(Session)
    with pytest.raises(SourceError, match="already runs 2 live sessions"):
        limit.admit(Session)
    first.running = False  # a stopped or ended session frees its place
    third = limit.admit(Session)
    assert third.running and second.running


def test_a_session_no_page_asks_for_is_closed_and_frees_its_place(tmp_path):
    from stream.live import LiveSession
    from stream.virtual_microscope import VirtualMicroscope
    from tests.stream.fakes import FixedClassifier

    limit = SessionLimit(1, idle_s=0.5)
    session = limit.admit(lambda: LiveSession(VirtualMicroscope(num_frames=None, realtime=True), FixedClassifier(),
                                              Config()))
    out_dir = session.out_dir
    session.touch()
    assert limit.close_idle() == 0 and session.running  # asked for just now
    time.sleep(0.7)
    assert limit.close_idle() == 1  # no page asked for it: stopped, its folder removed ...
    assert not session.running and not out_dir.exists()
    other = limit.admit(lambda: LiveSession(VirtualMicroscope(num_frames=3), FixedClassifier(), Config()))
    other.close()  # ... and its place is free again


def test_replay_folders_keep_only_the_newest(tmp_path):
    from stream.app import ReplayFolders

    replays = ReplayFolders(keep=2)
    folders = [replays.new() for _ in range(3)]
    assert not folders[0].exists() and folders[1].exists() and folders[2].exists()
    replays.remove_all()
    assert not any(f.exists() for f in folders)
