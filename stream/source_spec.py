"""Turn ``hv stream --source SRC`` into a source: a camera index, a URL, a file, a folder or "virtual"."""

from __future__ import annotations

import glob
from pathlib import Path

from stream.sources import CameraSource, ImageFolderSource, SourceError, VideoFileSource
from stream.virtual_microscope import DEFAULT_FIELDS, VirtualMicroscope

VIRTUAL = "virtual"


def open_source(spec: str, *, max_frames: int | None = None):
    """Open the source that ``spec`` names.

    ``0``, ``1``…: a camera index. ``rtsp://…``, ``http(s)://…``: a network stream.
    ``virtual`` or ``virtual:FOLDER``: the virtual microscope (bundled samples by default).
    An existing video file, an image folder, or a glob of images.

    Raises:
        SourceError: nothing by that name, or an unknown URL scheme.
    """
    spec = spec.strip()
    if spec.isdigit():
        return CameraSource(int(spec))
    if "://" in spec:
        return CameraSource(spec)  # checks the scheme
    if spec == VIRTUAL or spec.startswith(VIRTUAL + ":"):
        folder = spec.partition(":")[2] or DEFAULT_FIELDS
        return VirtualMicroscope(folder, num_frames=max_frames, realtime=True)
    path = Path(spec)
    if path.is_dir() or (not path.exists() and glob.glob(spec)):
        return ImageFolderSource(spec)
    if path.is_file():
        return VideoFileSource(path)
    raise SourceError(f"no camera, stream, video, folder or images called {spec!r}; "
                      f"use a camera index (0), a URL (rtsp://...), a file, a folder, or 'virtual'")
