from types import SimpleNamespace

import numpy as np

from stream.annotators import StatusAnnotator

LONG = "99 / 100 cells, 12 to check; another stain: colours adjusted; cells small (56 px < 75): labels less sure"


def test_a_long_status_wraps_at_its_notes_and_stays_inside_the_frame():
    """Two notes made the banner wider than a 640 px frame: its end, the note itself, was cut off."""
    annotator = StatusAnnotator(SimpleNamespace(status=LONG, report=None))
    assert annotator.lines(LONG, 622) == ["99 / 100 cells, 12 to check; another stain: colours adjusted",
                                          "cells small (56 px < 75): labels less sure"]
    assert annotator.lines("12 cells", 622) == ["12 cells"]
    scene = annotator.annotate(np.full((480, 640, 3), 230, np.uint8), None)
    banner = np.argwhere((scene == (60, 60, 60)).all(axis=2))  # the banner's grey
    assert banner[:, 1].max() < 630  # ends inside the frame, with room to spare
    assert banner[:, 0].max() - banner[:, 0].min() > 40  # two lines high
