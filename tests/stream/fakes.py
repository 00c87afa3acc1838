"""Stand-ins for the stream tests: a scripted classifier and a capture that fails on cue."""

from __future__ import annotations

import numpy as np

from hv.classifier import with_other_column


class FixedClassifier:
    """Returns the same probabilities for every crop and counts the crops it saw.

    Four probabilities get an "other" column of zeros, as ``hv.classifier`` gives a four-class model.
    """

    def __init__(self, probs=(0.1, 0.7, 0.1, 0.1), image_size: int = 32):
        self.probs = with_other_column(np.array([probs], np.float32))[0]
        self.image_size = image_size
        self.crops_seen = 0

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        assert crops_rgb.shape[1:] == (self.image_size, self.image_size, 3)
        self.crops_seen += len(crops_rgb)
        return np.tile(self.probs, (len(crops_rgb), 1))


class FlakyCapture:
    """A cv2.VideoCapture look-alike whose reads fail after ``fail_after`` frames, once per open."""

    opened = 0

    def __init__(self, device, fail_after: int = 3, refuse_reopen: bool = False):
        FlakyCapture.opened += 1
        self._left = fail_after
        self._ok = not (refuse_reopen and FlakyCapture.opened > 1)

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self._ok

    def read(self):
        if self._left <= 0:
            return False, None
        self._left -= 1
        return True, np.full((48, 64, 3), 100, np.uint8)

    def get(self, prop):
        return 0.0

    def release(self):
        pass
