import cv2
import numpy as np
import pytest

from hv.annotations import match_boxes
from hv.config import LocatorConfig
from hv.field_of_view import small_grey
from hv.locator import locate_cells
from stream.virtual_microscope import VirtualMicroscope, serpentine_scan


def test_is_seeded_and_moves():
    a = list(VirtualMicroscope(num_frames=5, seed=3))
    b = list(VirtualMicroscope(num_frames=5, seed=3))
    assert all(np.array_equal(x.image_bgr, y.image_bgr) for x, y in zip(a, b))
    assert not np.array_equal(a[0].image_bgr, a[4].image_bgr)
    assert a[0].image_bgr.shape == (480, 640, 3) and a[1].timestamp_s == 1 / 30


def test_ground_truth_matches_what_the_locator_finds():
    scope = VirtualMicroscope(num_frames=120)
    matched = truth_total = 0
    for frame in list(scope)[::10]:
        truth = scope.truth(frame.index)
        # Cells mostly out of the frame are not expected to be found.
        visible = (truth.boxes_xyxy[:, 2] - truth.boxes_xyxy[:, 0]) * (truth.boxes_xyxy[:, 3] - truth.boxes_xyxy[:, 1])
        whole = truth.boxes_xyxy[visible > 120 * 120]
        found = locate_cells(frame.image_bgr[..., ::-1].copy(), LocatorConfig())
        m, _, _ = match_boxes(found, whole, 0.5)
        matched, truth_total = matched + m, truth_total + len(whole)
    assert truth_total >= 8
    assert matched / truth_total >= 0.8


def test_labels_come_from_the_samples():
    scope = VirtualMicroscope(num_frames=1)
    # One field of each class; BloodImage_00043 holds two cells, labelled together: unknown (-1).
    # Five fields fill a 3 x 2 mosaic with the first one repeated, cells and all.
    first = scope.all_cells.label_id[0]
    assert sorted(scope.all_cells.label_id.tolist()) == sorted([-1, -1, 0, 1, 2, 3, first])


def test_a_scan_covers_the_slide_and_returns_over_the_first_row():
    path = serpentine_scan((1920, 960), (640, 480), speed_px=12, jitter_px=2.0)
    assert path[:, 0].min() >= 0 and path[:, 0].max() <= 1280 and path[:, 1].max() <= 480
    steps = np.hypot(*np.diff(path, axis=0).T)
    assert np.median(steps) == pytest.approx(12, abs=1.5)
    rows = sorted({round(y / 40) * 40 for y in path[:, 1]})
    assert rows[0] == 0 and rows[-1] == 480 and 240 in rows
    back = path[-50:]  # the end of the scan is the first row again
    assert np.abs(back[:, 1]).max() < 10


def test_defect_frames_are_blurred_or_dark():
    scope = VirtualMicroscope(path=np.zeros((3, 2)), defects={1: "blur", 2: "dark"})
    sharp, blurred, dark = (small_grey(scope.render(i), 160) for i in range(3))  # noise averages out
    assert cv2.Laplacian(blurred, cv2.CV_32F).var() < 0.2 * cv2.Laplacian(sharp, cv2.CV_32F).var()
    assert dark.mean() < 40 < sharp.mean()
    with pytest.raises(ValueError, match="unknown defects"):
        VirtualMicroscope(defects={0: "smudge"})
