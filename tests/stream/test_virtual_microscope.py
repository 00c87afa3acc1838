import numpy as np

from hv.annotations import match_boxes
from hv.config import LocatorConfig
from hv.locator import locate_cells
from stream.virtual_microscope import VirtualMicroscope


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
    assert sorted(scope.all_cells.label_id.tolist()) == [-1, -1, 0, 1, 2, 3]
