"""Frame sources: video files, image folders, live cameras and network streams.

Every source opens in its constructor and reads a first frame, or raises ``SourceError``
naming the source. Iterating a source yields ``Frame`` objects; ``close()`` (or the
``with`` block) releases it. Files give every frame in order; live sources give the newest
frame only, so a slow consumer drops frames instead of falling behind.
"""

from __future__ import annotations

import glob
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from hv.preprocess import IMAGE_SUFFIXES, ImageReadError, read_image_rgb
from stream.detections import Frame

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names it and says what to check."""


class ClosingSource:
    """``with`` support for sources: leaving the block calls ``close()``."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Grayscale or BGRA frames to 3-channel BGR (some cameras and files deliver them)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class VideoFileSource(ClosingSource):
    """Every frame of a video file in order (every ``stride``-th), with media timestamps.

    ``close()`` from another thread (a live session's Stop) ends the iteration after the
    frame in hand; the iterating thread releases the capture, never one that is mid-read.
    """

    live = False

    def __init__(self, path: str | Path, stride: int = 1):
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        self._capture = cv2.VideoCapture(str(self.path))
        ok, self._first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            raise SourceError(f"{self.path}: cannot read a frame (not a video, or a codec OpenCV lacks)")
        self.stride = max(1, stride)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = count if count > 0 else None
        self.frames_read = 0
        self._lock = threading.Lock()
        self._closed = self._iterating = False

    def __iter__(self) -> Iterator[Frame]:
        with self._lock:
            if self._closed:
                return
            self._iterating = True
        try:
            yield from self._frames()
        finally:
            with self._lock:
                self._iterating = False
                if self._closed:
                    self._capture.release()

    def _frames(self) -> Iterator[Frame]:
        index, image = 0, self._first
        while image is not None and not self._closed:
            if index % self.stride == 0:
                timestamp = index / self.fps if self.fps else self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
                yield Frame(as_bgr(image), index, timestamp, time.monotonic())
            self.frames_read = index + 1
            ok, image = self._capture.read()
            image = image if ok else None
            index += 1
        if self.frame_count and self.frames_read < self.frame_count:
            log.warning("%s: ended after %d of %d frames (truncated or corrupt file)", self.path,
                        self.frames_read, self.frame_count)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if not self._iterating:
                self._capture.release()


class ImageFolderSource(ClosingSource):
    """Images of a folder or glob pattern, sorted by name; unreadable files are skipped and logged."""

    live = False

    def __init__(self, pattern: str | Path, fps: float = 1.0):
        pattern = str(pattern)
        if Path(pattern).is_dir():
            paths = sorted(p for p in Path(pattern).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths = sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SourceError(f"{pattern}: no images (.jpg, .png, .bmp, .tif) found")
        self.name, self.paths, self.fps = pattern, paths, fps
        self.frame_count = len(paths)
        self.skipped: list[str] = []

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            try:
                image = cv2.cvtColor(read_image_rgb(str(path), require_colour=False), cv2.COLOR_RGB2BGR)
            except ImageReadError as exc:
                log.warning("skipped %s", exc)
                self.skipped.append(str(path))
                continue
            yield Frame(image, index, index / self.fps, time.monotonic())


class CameraSource(ClosingSource):
    """A live camera (index) or network stream (URL) read by a background thread.

    The reader overwrites a single slot under a lock, so ``read()`` always returns the
    newest frame and lag never grows. When reads fail (cable pulled, stream dropped) it
    reopens the device with exponential back-off, up to ``max_reconnects`` attempts in a
    row, logging each; after that the source ends and ``error`` says why.

    The reader thread owns the capture once it runs: it alone reads, reopens and releases
    it, so ``close()`` never frees a capture that a read is still using. ``close()`` returns
    within ``close_timeout_s`` even if the device is stalled in a read; the thread then
    releases the device as soon as that read returns. Network streams are opened with
    OpenCV's open and read timeouts (``timeout_s``), so a dead address cannot block a read
    for long.
    """

    live = True

    def __init__(self, device: int | str, *, max_reconnects: int = 5, backoff_s: float = 0.5,
                 capture_factory=cv2.VideoCapture, timeout_s: float = 5.0, close_timeout_s: float = 1.0):
        if isinstance(device, str) and not device.startswith(URL_SCHEMES):
            raise SourceError(f"unknown stream URL scheme in {device!r}; expected one of {', '.join(URL_SCHEMES)}")
        self.name = f"camera {device}" if isinstance(device, int) else device
        self._device, self._factory = device, capture_factory
        self.max_reconnects, self.backoff_s = max_reconnects, backoff_s
        self.timeout_s, self.close_timeout_s = timeout_s, close_timeout_s
        self._lock = threading.Lock()
        self._fresh = threading.Condition(self._lock)
        self._latest: Frame | None = None
        self._running = True
        self.error: str | None = None
        self.reconnects = 0
        self.frames_read = 0
        self._read_times: deque[float] = deque(maxlen=60)
        self._started = time.monotonic()
        self._capture = self._open()
        ok, image = self._capture.read()
        if not ok:
            self._capture.release()
            raise SourceError(f"{self.name}: opened but no frame arrived; check the camera or stream")
        self._store(image)
        fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and fps > 0 else None
        self._thread = threading.Thread(target=self._reader, name=f"reader {self.name}", daemon=True)
        self._thread.start()

    def _open(self):
        if isinstance(self._device, str) and self._factory is cv2.VideoCapture:
            timeout_ms = int(self.timeout_s * 1000)
            capture = cv2.VideoCapture(self._device, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms,
                                                                  cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms])
        else:
            capture = self._factory(self._device)
        if not capture.isOpened():
            capture.release()
            raise SourceError(f"cannot open {self.name}; check that it is connected and not in use")
        return capture

    def _store(self, image: np.ndarray) -> None:
        with self._fresh:
            now = time.monotonic()
            self._read_times.append(now)
            self._latest = Frame(as_bgr(image), self.frames_read, now - self._started, now)
            self.frames_read += 1
            self._fresh.notify_all()

    def _reconnect(self) -> bool:
        self._capture.release()
        for attempt in range(1, self.max_reconnects + 1):
            delay = self.backoff_s * 2 ** (attempt - 1)
            log.warning("%s: read failed; reconnecting in %.1f s (attempt %d of %d)", self.name, delay, attempt,
                        self.max_reconnects)
            with self._fresh:  # wait for the back-off, but wake at once when closed
                self._fresh.wait_for(lambda: not self._running, timeout=delay)
            if not self._running:
                return False
            try:
                self._capture = self._open()
            except SourceError:
                continue
            self.reconnects += 1
            log.info("%s: reconnected", self.name)
            return True
        return False

    def _reader(self) -> None:
        try:
            while self._running:
                ok, image = self._capture.read()
                if not self._running:
                    break
                if ok:
                    self._store(image)
                elif not self._reconnect():
                    if not self._running:
                        break
                    with self._fresh:
                        self.error = self.error or f"{self.name}: lost after {self.max_reconnects} reconnect attempts"
                        self._running = False
                        self._fresh.notify_all()
                    log.error("%s", self.error)
        finally:
            self._capture.release()  # the owner releases it, after its last read

    @property
    def read_fps(self) -> float | None:
        """Frames per second the camera actually delivered, over the last 60 frames."""
        with self._lock:
            times = list(self._read_times)
        return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else None

    def read(self, timeout_s: float = 1.0) -> Frame | None:
        """The newest frame not yet returned, waiting up to ``timeout_s``; None if none came."""
        with self._fresh:
            deadline = time.monotonic() + timeout_s
            while self._latest is None and self._running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._fresh.wait(remaining)
            frame, self._latest = self._latest, None
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while self._running or self._latest is not None:
            frame = self.read()
            if frame is not None:
                yield frame

    def close(self) -> None:
        with self._fresh:
            self._running = False
            self._fresh.notify_all()
        self._thread.join(timeout=self.close_timeout_s)
        if self._thread.is_alive():
            log.warning("%s: the device is stalled in a read; it is released when the read returns", self.name)
