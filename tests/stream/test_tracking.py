import numpy as np
import pytest

from hv.config import LocatorConfig
from stream.counter import DifferentialCount
from stream.detections import Detections
from stream.track_classifier import TrackClassifier
from stream.tracker import IouTracker
from tests.stream.fakes import FixedClassifier


def boxes(*xs, y=50, size=40):
    return Detections(np.array([[x, y, x + size, y + size] for x in xs], np.float32))


def test_detections_check_shapes_and_filter():
    dets = boxes(0, 100, 200)
    assert len(dets) == 3 and (dets.label_id == -1).all() and (dets.track_id == -1).all()
    assert len(dets[dets.boxes_xyxy[:, 0] > 50]) == 2
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="confidence has 2 entries for 3 boxes"):
        Detections(dets.boxes_xyxy, confidence=np.zeros(2))


def test_tracker_keeps_ids_while_cells_drift_and_ends_lost_tracks():
    tracker = IouTracker(min_iou=0.3, max_missing=2)
    first = tracker.update(boxes(0, 200), 0)
    assert first.track_id.tolist() == [0, 1]
    moved = tracker.update(boxes(204, 5), 1)  # both drift by a few pixels; order swapped
    assert moved.track_id.tolist() == [1, 0]
    tracker.update(boxes(206), 2)  # cell 0 missed once: kept alive
    assert tracker.update(boxes(8, 208), 3).track_id.tolist() == [0, 1]
    for frame in range(4, 8):
        tracker.update(boxes(210), frame)  # cell 0 gone for good
    assert tracker.live_track_ids == {1}
    assert tracker.update(boxes(8, 210), 8).track_id.tolist() == [2, 1]  # a returning cell is a new track


def test_each_track_is_classified_a_few_times_not_every_frame():
    classifier = FixedClassifier()
    tc = TrackClassifier(classifier, LocatorConfig(), recheck_every=5, max_votes=2)
    image = np.zeros((200, 300, 3), np.uint8)
    tracker = IouTracker()
    for frame in range(30):
        dets = tc.update(tracker.update(boxes(10, 150), frame), image, frame)
    assert classifier.crops_seen == 4  # two tracks, two votes each
    assert dets.label_id.tolist() == [1, 1]
    assert np.allclose(dets.confidence, 0.7)


def test_low_confidence_is_unidentified():
    tc = TrackClassifier(FixedClassifier((0.3, 0.3, 0.2, 0.2)), LocatorConfig(), min_confidence=0.5)
    dets = tc.update(IouTracker().update(boxes(10), 0), np.zeros((100, 100, 3), np.uint8), 0)
    assert dets.label_id.tolist() == [-1] and dets.confidence[0] == pytest.approx(0.3)


def test_differential_counts_each_track_once_under_its_latest_label():
    counter = DifferentialCount()
    for label in (0, 0, 3):  # the same track seen three times, its label revised once
        counter.update(Detections(np.zeros((1, 4)), np.ones(1), np.array([label]), np.array([7])))
    counter.update(Detections(np.zeros((3, 4)), np.ones(3), np.array([1, -1, 4]), np.array([8, 9, 10])))
    assert counter.counts() == {"eosinophil": 0, "lymphocyte": 1, "monocyte": 0, "neutrophil": 1,
                                "other": 1, "unidentified": 1}
    # "other" and unidentified cells stay out of the differential's percentages.
    assert counter.percentages() == {"eosinophil": 0.0, "lymphocyte": 50.0, "monocyte": 0.0, "neutrophil": 50.0}
    assert counter.total == 4
