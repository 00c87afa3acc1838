import numpy as np
import pytest

from hv.config import LocatorConfig
from hv.locator import locate_cells
from hv.preprocess import read_image_rgb
from hv.stain import AS_IS, LAMP, STAIN
from stream.counter import DifferentialCount, wilson_interval
from stream.detections import Detections, mark_cut_cells
from stream.motion import StagePosition
from stream.track_classifier import TrackClassifier
from stream.tracker import SlideTracker
from tests.conftest import SAMPLES
from tests.stain_shifts import restained
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


def at(x, y=0.0, region=0):
    return StagePosition(x, y, region, 1.0, False)


def test_tracker_keeps_ids_while_cells_drift_and_remembers_cells_out_of_sight():
    tracker = SlideTracker(min_iou=0.3, max_missing=2)
    first = tracker.update(boxes(0, 200), 0)
    assert first.track_id.tolist() == [0, 1]
    moved = tracker.update(boxes(204, 5), 1)  # both drift by a few pixels; order swapped
    assert moved.track_id.tolist() == [1, 0]
    tracker.update(boxes(206), 2)  # cell 0 missed once: kept alive
    assert tracker.update(boxes(8, 208), 3).track_id.tolist() == [0, 1]
    for frame in range(4, 8):
        tracker.update(boxes(210), frame)  # cell 0 out of sight for longer than max_missing
    assert tracker.live_track_ids == {1} and tracker.known_track_ids == {0, 1}
    # Back at its place on the slide, it is the same cell; a cell somewhere new is a new one.
    assert tracker.update(boxes(8, 210, 100), 8).track_id.tolist() == [0, 1, 2]


def test_tracker_follows_cells_in_slide_coordinates_and_forgets_them_in_a_new_region():
    tracker = SlideTracker(min_iou=0.3, max_missing=1)
    assert tracker.update(boxes(100), 0, at(0.0), (300, 200)).track_id.tolist() == [0]
    # The stage moved 150 px right: the cell is now at frame x = -50 (out of view), a new one at 100.
    assert tracker.update(boxes(100), 1, at(150.0), (300, 200)).track_id.tolist() == [1]
    # Panned back: both cells are where they were on the slide, so neither is new.
    assert tracker.update(boxes(100, 250), 5, at(0.0), (300, 200)).track_id.tolist() == [0, 1]
    # The motion was lost: new coordinates, so the same frame position is a new cell.
    assert tracker.update(boxes(100), 6, at(0.0, region=1), (300, 200)).track_id.tolist() == [2]


def test_a_cell_cut_at_the_edge_matches_its_whole_box_and_never_replaces_it():
    tracker = SlideTracker(min_iou=0.3, max_missing=1)
    whole = mark_cut_cells(boxes(100, size=60), (300, 200), 2.0)
    assert tracker.update(whole, 0, at(0.0), (300, 200)).track_id.tolist() == [0]
    # The stage moves 140 px right: the cell's box is cut at the left edge (clipped to 0-20).
    cut = mark_cut_cells(Detections(np.array([[0, 50, 20, 110]], np.float32)), (300, 200), 2.0)
    assert not cut.whole[0]
    assert tracker.update(cut, 1, at(140.0), (300, 200)).track_id.tolist() == [0]
    assert tracker.update(whole, 9, at(0.0), (300, 200)).track_id.tolist() == [0]  # whole box still remembered


def test_parts_of_one_cell_found_apart_keep_its_id_and_neighbours_keep_theirs():
    # A 60-px cell whose upper lobes are found in one frame and its lower lobes in the next (IoU 0.2).
    tracker = SlideTracker(min_iou=0.3, max_missing=5, max_centre_frac=0.5)
    upper = Detections(np.array([[100, 100, 160, 130]], np.float32))
    lower = Detections(np.array([[100, 120, 160, 160]], np.float32))
    assert tracker.update(upper, 0, at(0.0), (300, 200), diameter_px=60.0).track_id.tolist() == [0]
    assert tracker.update(lower, 1, at(0.0), (300, 200), diameter_px=60.0).track_id.tolist() == [0]
    # Overlap alone (no diameter) cannot tell: the lower lobes would be a second cell.
    plain = SlideTracker(min_iou=0.3, max_missing=5)
    plain.update(upper, 0, at(0.0), (300, 200))
    assert plain.update(lower, 1, at(0.0), (300, 200)).track_id.tolist() == [1]
    # A neighbour a diameter away is another cell, and each box takes one cell at most.
    both = Detections(np.array([[100, 125, 160, 165], [162, 100, 222, 160]], np.float32))
    assert tracker.update(both, 2, at(0.0), (300, 200), diameter_px=60.0).track_id.tolist() == [0, 1]


def test_far_apart_lobes_found_as_two_boxes_are_one_cell_and_a_neighbour_is_another():
    # An eosinophil 100 px wide, seen whole as one box, then as its two lobes' boxes (a third of the smaller
    # overlapping: the locator keeps both).
    whole = Detections(np.array([[50, 50, 150, 150]], np.float32))
    lobes = Detections(np.array([[90, 55, 148, 140], [52, 80, 115, 148]], np.float32))
    tracker = SlideTracker(min_iou=0.3, max_missing=5, max_centre_frac=0.5, part_of_cell=0.75)
    assert tracker.update(whole, 0, at(0.0), (300, 200), diameter_px=100.0).track_id.tolist() == [0]
    split = tracker.update(lobes, 1, at(0.0), (300, 200), diameter_px=100.0)
    assert split.track_id.tolist() == [0]  # the second lobe's box is left out: no second cell
    assert tracker.known_track_ids == {0}
    # Without the rule the second lobe starts a cell of its own.
    plain = SlideTracker(min_iou=0.3, max_missing=5, max_centre_frac=0.5, part_of_cell=0.0)
    plain.update(whole, 0, at(0.0), (300, 200), diameter_px=100.0)
    assert plain.update(lobes, 1, at(0.0), (300, 200), diameter_px=100.0).track_id.tolist() == [0, 1]
    # A neighbour pressed against the cell (0.45 of it inside the cell's box, as BCCD's nearest pair)
    # is another cell.
    neighbour = Detections(np.array([[50, 50, 150, 150], [105, 50, 205, 150]], np.float32))
    assert tracker.update(neighbour, 2, at(0.0), (300, 200), diameter_px=100.0).track_id.tolist() == [0, 1]


@pytest.mark.parametrize("part_of_cell, expected", [(0.75, [0]), (0.0, [1])])
def test_a_lobe_found_alone_inside_a_cells_box_continues_that_cell(part_of_cell, expected):
    # A cell larger than the frame's expected diameter (BloodImage_00183's box was 1.7 of it).
    tracker = SlideTracker(min_iou=0.3, max_missing=5, max_centre_frac=0.5, part_of_cell=part_of_cell)
    whole = Detections(np.array([[50, 50, 150, 150]], np.float32))
    assert tracker.update(whole, 0, at(0.0), (300, 200), diameter_px=70.0).track_id.tolist() == [0]
    # Only its lower-left lobe is found: IoU 0.19 with the cell's box, its centre 0.55 of a diameter off,
    # so neither overlap nor centre ties it to the cell; it lies inside the cell's box.
    lobe = Detections(np.array([[52, 110, 100, 150]], np.float32))
    assert tracker.update(lobe, 1, at(0.0), (300, 200), diameter_px=70.0).track_id.tolist() == expected


def test_a_cell_out_of_view_is_not_taken_by_a_box_at_the_edge_near_where_it_lies():
    tracker = SlideTracker(min_iou=0.3, max_missing=1, max_centre_frac=0.5)
    assert tracker.update(boxes(100, size=60), 0, at(0.0), (300, 200), diameter_px=60.0).track_id.tolist() == [0]
    # The stage moved 170 px right: the cell lies 10 px beyond the left edge, a new cell enters there.
    entering = Detections(np.array([[0, 50, 25, 110]], np.float32))
    assert tracker.update(entering, 1, at(170.0), (300, 200), diameter_px=60.0).track_id.tolist() == [1]


def test_each_track_is_classified_a_few_times_not_every_frame():
    classifier = FixedClassifier()
    tc = TrackClassifier(classifier, LocatorConfig(), recheck_every=5, max_votes=2)
    image = np.zeros((200, 300, 3), np.uint8)
    tracker = SlideTracker()
    for frame in range(30):
        dets = tc.update(tracker.update(boxes(10, 150), frame), image, frame)
    assert classifier.crops_seen == 4  # two tracks, two votes each
    assert dets.label_id.tolist() == [1, 1]
    assert np.allclose(dets.confidence, 0.7)


def test_low_confidence_is_unidentified():
    tc = TrackClassifier(FixedClassifier((0.3, 0.3, 0.2, 0.2)), LocatorConfig(), min_confidence=0.5)
    dets = tc.update(SlideTracker().update(boxes(10), 0), np.zeros((100, 100, 3), np.uint8), 0)
    assert dets.label_id.tolist() == [-1] and dets.confidence[0] == pytest.approx(0.3)


def test_a_cut_cell_is_not_classified_until_it_is_whole():
    classifier = FixedClassifier()
    tc = TrackClassifier(classifier, LocatorConfig())
    image = np.zeros((200, 300, 3), np.uint8)
    cut = mark_cut_cells(Detections(np.array([[0, 50, 30, 110]], np.float32), track_id=[4]), (300, 200), 2.0)
    dets = tc.update(cut, image, 0)
    assert classifier.crops_seen == 0 and dets.label_id.tolist() == [-2]  # partial
    whole = mark_cut_cells(Detections(np.array([[10, 50, 70, 110]], np.float32), track_id=[4]), (300, 200), 2.0)
    assert tc.update(whole, image, 1).label_id.tolist() == [1] and classifier.crops_seen == 1
    assert tc.update(cut, image, 2).label_id.tolist() == [1]  # leaving: keeps the label it got whole


class ScriptedClassifier(FixedClassifier):
    """Answers crop after crop from a script of class ids (probability 0.9), then the last one."""

    def __init__(self, script):
        super().__init__()
        self.script = list(script)

    def predict(self, crops_rgb):
        rows = []
        for _ in crops_rgb:
            label = self.script[min(self.crops_seen, len(self.script) - 1)]
            self.crops_seen += 1
            rows.append(np.where(np.arange(5) == label, 0.9, 0.025).astype(np.float32))
        return np.array(rows)


def test_views_clear_of_the_edge_outvote_the_first_views_near_it():
    """A cell entering at the left edge is classified once whole, then again as soon as the
    stage brings it clear of the edge; its label ends on its clear views, and views near the
    edge as it leaves do not vote."""
    classifier = ScriptedClassifier([0, 0, 3])  # the views next to the edge look like an eosinophil, the rest not
    tc = TrackClassifier(classifier, LocatorConfig(), recheck_every=2, max_votes=3, clear_by=0.35)
    image = np.zeros((200, 300, 3), np.uint8)
    labels = []
    for frame, x in enumerate([4, 5, 6, 20, 21, 22, 23, 30, 10, 4]):  # box x1: its clearance from the left edge
        dets = Detections(np.array([[x, 80, x + 40, 120]], np.float32), track_id=[3])
        labels.append(int(tc.update(dets, image, frame, diameter_px=40.0).label_id[0]))
    assert labels[:3] == [0, 0, 0]  # the views within 14 px (0.35 diameter) of the edge: eosinophil
    assert labels[3:] == [3] * 7  # the first clear view (x = 20) replaced them at once: neutrophil
    # Votes at x = 4 and 6 (near the edge), 20 (the first clear view), then re-checks at 22 and 30;
    # none at 10 or 4, leaving.
    assert classifier.crops_seen == 5 and tc.voted_frames(3) == [7, 5, 3]


def test_a_cell_never_seen_clear_keeps_its_votes_near_the_edge():
    tc = TrackClassifier(ScriptedClassifier([0]), LocatorConfig(), recheck_every=2, max_votes=3, clear_by=0.35)
    image = np.zeros((200, 300, 3), np.uint8)
    for frame in range(6):
        dets = Detections(np.array([[8, 80, 48, 120]], np.float32), track_id=[5])
        label = int(tc.update(dets, image, frame, diameter_px=40.0).label_id[0])
    assert label == 0 and tc.voted_frames(5) == [0, 2, 4]


@pytest.mark.parametrize("order", ["lamp first", "stain first"])
def test_a_track_reports_the_strongest_colour_correction_among_its_votes(order):
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    box = locate_cells(field, LocatorConfig())[0]
    lit = np.clip(field * np.array([1.0, 0.85, 0.62]), 0, 255).astype(np.uint8)  # a warm lamp
    frames = [lit, restained(field)] if order == "lamp first" else [restained(field), lit]
    tc = TrackClassifier(FixedClassifier(image_size=32), LocatorConfig(), recheck_every=1, max_votes=3)
    seen = [tc.update(Detections(box[None], track_id=[2]), image, frame).recoloured[0]
            for frame, image in enumerate([field, *frames])]
    # A vote's correction never gives way to a weaker one: the strongest of the kept votes is reported.
    assert seen == ([AS_IS, LAMP, STAIN] if order == "lamp first" else [AS_IS, STAIN, STAIN])
    assert tc.recoloured(2) == STAIN


def test_differential_counts_each_track_once_under_its_latest_label():
    counter = DifferentialCount()
    for label in (0, 0, 3):  # the same track seen three times, its label revised once
        counter.update(Detections(np.zeros((1, 4)), np.ones(1), np.array([label]), np.array([7])))
    counter.update(Detections(np.zeros((3, 4)), np.ones(3), np.array([1, -1, 4]), np.array([8, 9, 10])))
    assert counter.counts() == {"eosinophil": 0, "lymphocyte": 1, "monocyte": 0, "neutrophil": 1,
                                "other": 1, "unidentified": 1, "partial": 0}
    # "other" and unidentified cells stay out of the differential's percentages.
    assert counter.percentages() == {"eosinophil": 0.0, "lymphocyte": 50.0, "monocyte": 0.0, "neutrophil": 50.0}
    assert counter.total == 4


def seen(counter, tracks, labels):
    counter.update(Detections(np.zeros((len(tracks), 4)), np.ones(len(tracks)), np.array(labels), np.array(tracks)))


def test_partial_cells_are_counted_apart_until_seen_whole():
    counter = DifferentialCount()
    seen(counter, [1, 2], [-2, -2])
    assert counter.counts()["partial"] == 2 and counter.total == 0
    seen(counter, [1], [3])  # cell 1 came into full view and was classified
    assert counter.counts()["partial"] == 1 and counter.counts()["neutrophil"] == 1 and counter.total == 1


def test_the_differential_ends_at_its_target_and_keeps_corrections():
    counter = DifferentialCount(target=3)
    seen(counter, [1, 2, 3, 4], [0, 1, -1, 4])  # unidentified and other cells do not count towards the target
    assert not counter.complete and counter.identified == 2
    seen(counter, [5], [3])
    assert counter.complete and counter.identified == 3
    seen(counter, [6], [2])  # after the target: not added
    assert counter.counts()["monocyte"] == 0 and counter.total == 5
    counter.relabel(5, 2)  # a user's correction moves the count ...
    assert counter.counts()["monocyte"] == 1 and counter.counts()["neutrophil"] == 0
    seen(counter, [5], [3])  # ... and a later vote does not undo it
    assert counter.counts()["monocyte"] == 1
    with pytest.raises(KeyError, match="#6 is not in the count"):
        counter.relabel(6, 0)


def test_cells_under_the_review_threshold_are_to_check_until_corrected():
    counter = DifferentialCount(check_below=0.7)
    confidence = np.array([0.95, 0.69, 0.45, 0.9])  # track 3: unidentified (under min_confidence)
    counter.update(Detections(np.zeros((4, 4)), confidence, np.array([0, 3, -1, 4]), np.array([1, 2, 3, 4])))
    assert counter.to_check == 2 and counter.confidence_of(2) == pytest.approx(0.69)
    counter.update(Detections(np.zeros((1, 4)), np.array([0.8]), np.array([3]), np.array([2])))  # a surer vote
    assert counter.to_check == 1
    counter.relabel(3, 1)  # the technician looked at the unidentified cell
    assert counter.to_check == 0


def test_wilson_interval_holds_the_share_and_widens_for_small_counts():
    lo, hi = wilson_interval(10, 100)
    assert (lo, hi) == pytest.approx((5.52, 17.44), abs=0.01)  # the textbook values for 10 / 100
    small = wilson_interval(1, 10)
    assert small[1] - small[0] > hi - lo and small[0] >= 0.0
    assert wilson_interval(0, 0) == (0.0, 0.0) and wilson_interval(5, 5)[1] == 100.0
