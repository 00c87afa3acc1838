from pathlib import Path

import cv2
import numpy as np
import pytest

from hv.annotations import iou_matrix, match_boxes, points_in_boxes, read_voc_boxes
from hv.config import LocatorConfig
from hv.locator import crop_cell, locate_cells, small_cells_note
from hv.preprocess import read_image_rgb
from hv.stain import green_over_blue, red_cells_pink
from tests.conftest import SAMPLES, draw_field
from tests.stain_shifts import restained
from training.augment import RGB_FROM_HED

FIELDS = Path(__file__).parent / "fields"


@pytest.mark.parametrize("field", sorted(p.stem for p in SAMPLES.glob("*.jpg")))
def test_finds_each_annotated_white_cell_on_sample_fields(field):
    image = read_image_rgb(str(SAMPLES / f"{field}.jpg"))
    truth = read_voc_boxes(SAMPLES / f"{field}.xml")
    boxes = locate_cells(image, LocatorConfig())
    matched, false_pos, missed = match_boxes(boxes, truth, threshold=0.5)
    assert (matched, false_pos, missed) == (len(truth), 0, 0)


@pytest.mark.parametrize("field", sorted(p.stem for p in SAMPLES.glob("*.jpg")))
def test_boxes_fit_the_annotated_cells_tightly(field):
    image = read_image_rgb(str(SAMPLES / f"{field}.jpg"))
    truth = read_voc_boxes(SAMPLES / f"{field}.xml")
    assert match_boxes(locate_cells(image, LocatorConfig()), truth, threshold=0.7) == (len(truth), 0, 0)


def test_box_follows_the_cytoplasm_not_just_the_nucleus():
    # A monocyte-like cell: wide lilac cytoplasm (too faint for the nucleus threshold, bluer
    # than the field in CIELAB b*), nucleus pushed to its left side.
    image = np.full((240, 320, 3), (214, 212, 218), np.uint8)
    import cv2

    cv2.circle(image, (160, 120), 50, (195, 165, 220), -1)
    cv2.circle(image, (135, 120), 22, (100, 60, 200), -1)
    boxes = locate_cells(image, LocatorConfig())
    centre_x = (boxes[0, 0] + boxes[0, 2]) / 2
    assert abs(centre_x - 160) < abs(centre_x - 135)  # nearer the cell's centre than the nucleus's
    assert iou_matrix(boxes, np.array([[110, 70, 210, 170]], np.float32))[0, 0] >= 0.7


def test_neutrophil_lobes_are_one_cell():
    image = read_image_rgb(str(SAMPLES / "BloodImage_00001.jpg"))  # a neutrophil
    assert len(locate_cells(image, LocatorConfig())) == 1


def test_synthetic_fields_and_empty_field():
    rng = np.random.default_rng(3)
    config = LocatorConfig()
    for label in range(4):
        boxes = locate_cells(draw_field(rng, label, cells=2, width=320, height=240), config)
        assert len(boxes) == 2, label
    blank = np.full((240, 320, 3), 215, np.uint8)
    assert locate_cells(blank, config).shape == (0, 4)


def test_platelet_sized_blobs_are_ignored():
    image = np.full((240, 320, 3), (214, 212, 218), np.uint8)
    import cv2

    for x in (60, 160, 260):
        cv2.circle(image, (x, 120), 5, (120, 60, 200), -1)
    assert len(locate_cells(image, LocatorConfig())) == 0


def test_a_second_nucleus_under_the_area_filter_counts_beside_a_larger_one():
    # The scale says cells are 96 px wide (the area filter: 0.12 of such a cell, 868 px^2), as it
    # would in a field of clumped red cells that overstate it. A 15-px nucleus (707 px^2) falls
    # under the filter, but beside a 25-px one it is a second cell; a 7-px blob stays a platelet.
    config = LocatorConfig(cell_diameter_frac=0.3)
    image = np.full((240, 320, 3), (214, 212, 218), np.uint8)
    cv2.circle(image, (70, 120), 25, (100, 60, 200), -1)
    cv2.circle(image, (250, 70), 15, (100, 60, 200), -1)
    cv2.circle(image, (250, 190), 7, (100, 60, 200), -1)
    boxes = locate_cells(image, config)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert len(boxes) == 2
    assert np.abs(centres - [[70, 120], [250, 70]]).max() < 6  # the larger first, then the smaller; no platelet

    alone = np.full((240, 320, 3), (214, 212, 218), np.uint8)
    cv2.circle(alone, (250, 70), 15, (100, 60, 200), -1)
    assert len(locate_cells(alone, config)) == 0  # a field's first cell still has to pass the filter


def test_a_sliver_of_a_cell_at_the_frame_edge_makes_no_platelet_a_second_cell():
    # As the test above (cells 96 px wide, filter 868 px^2, a 15-px blob of 707 px^2 under it), but the
    # largest blob is a 40-px nucleus cut by the left edge to a 30 x 77 px sliver of ~1,720 px^2: 0.3 of
    # that would let the 15-px blob in. A cut blob does not show its nucleus's size, so it is no reference
    # for the share; a whole nucleus beside the sliver still is.
    config = LocatorConfig(cell_diameter_frac=0.3)

    def centres(nuclei: list[tuple[int, int, int]]) -> np.ndarray:
        image = np.full((240, 320, 3), (214, 212, 218), np.uint8)
        for x, y, radius in nuclei:
            cv2.circle(image, (x, y), radius, (100, 60, 200), -1)
        boxes = locate_cells(image, config)
        return (boxes[:, :2] + boxes[:, 2:]) / 2

    sliver = centres([(-10, 120, 40), (250, 70, 15)])
    assert len(sliver) == 1 and sliver[0, 0] < 40  # the cut cell is located (the stream tracks it as partial), alone
    beside_whole = centres([(-10, 120, 40), (130, 170, 25), (250, 70, 15)])
    assert len(beside_whole) == 3 and np.abs(beside_whole[2] - [250, 70]).max() < 6


def test_lobes_a_faded_stain_leaves_apart_are_one_cell():
    # BCCD's BloodImage_00240 (an eosinophil at the top edge) with both stains at 55 % of their density,
    # at a cell scale a little under the measured one, as a running estimate can be: the closing no
    # longer joins the lobes, and the two lobes' boxes overlap by well over half of the smaller one.
    image = read_image_rgb(str(FIELDS / "BloodImage_00240.jpg"))
    faded = restained(image, RGB_FROM_HED.astype(np.float64) * 0.55)
    boxes = locate_cells(faded, LocatorConfig(), diameter_px=155.0)
    assert len(boxes) == 1
    assert iou_matrix(boxes, read_voc_boxes(FIELDS / "BloodImage_00240.xml"))[0, 0] >= 0.6


def _smear(nucleus_rgb=None, red_cells: str = "dense", width: int = 320, height: int = 240,
           red_cell_rgb=(216, 176, 141)) -> np.ndarray:
    """A field in another stain: yellowish plasma, tan red cells, and optionally a white cell at
    the centre whose nucleus has the given colour. Neighbouring red cells overlap in pairs in the
    dense layout; where they do, their densities add (transmittances multiply), as two layers
    of cells do in a monolayer's crowded parts."""
    plasma = np.array([236, 226, 176], np.float32)
    transmittance = np.ones((height, width, 3), np.float32)
    red_cell = np.array(red_cell_rgb, np.float32) / plasma
    step = 34 if red_cells == "dense" else 90
    for y in range(10, height, step):
        for x in range(10, width, step):
            if nucleus_rgb is not None and abs(x - width / 2) < 60 and abs(y - height / 2) < 60:
                continue
            layer = np.ones_like(transmittance)
            cv2.circle(layer, (x, y), 18, tuple(float(v) for v in red_cell), -1)  # 18 > step / 2: pairs overlap
            transmittance *= layer
    image = plasma * transmittance
    if nucleus_rgb is not None:
        cv2.circle(image, (width // 2, height // 2), 45, (225, 200, 150), -1)  # cytoplasm
        cv2.circle(image, (width // 2, height // 2), 25, tuple(float(v) for v in nucleus_rgb), -1)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_a_nucleus_of_another_stain_is_found_by_its_density():
    field = _smear(nucleus_rgb=(120, 55, 35))  # brown-red: not bluer than red or green anywhere
    config = LocatorConfig(cell_diameter_frac=0.3)
    boxes = locate_cells(field, config)
    assert len(boxes) == 1
    x1, y1, x2, y2 = boxes[0]
    assert x1 < 160 < x2 and y1 < 120 < y2
    assert len(locate_cells(field, LocatorConfig(cell_diameter_frac=0.3, dense_nucleus_od=0))) == 0  # fallback off


# Red cells over the yellowish plasma of _smear: eosin-pink (absorbing green) or yellow (absorbing blue,
# another stain's); a light brown nucleus, about 1.4 optical density above the plasma: under the
# search for dense objects that a field with pink red cells gets (2.0), over another stain's (1.2).
PINK_RED_CELL, YELLOW_RED_CELL, LIGHT_BROWN_NUCLEUS = (200, 124, 141), (224, 192, 97), (185, 130, 100)


def test_red_cells_are_pink_in_a_romanowsky_stain_and_not_in_another():
    assert green_over_blue(_smear(red_cell_rgb=PINK_RED_CELL)) > 1.5
    assert green_over_blue(_smear(red_cell_rgb=YELLOW_RED_CELL)) < 0.6
    assert red_cells_pink(_smear(red_cell_rgb=PINK_RED_CELL))
    assert not red_cells_pink(_smear(red_cell_rgb=YELLOW_RED_CELL))
    assert red_cells_pink(np.zeros((240, 320, 3), np.uint8))  # nothing to measure: the stricter search


def test_a_light_nucleus_is_found_where_the_red_cells_show_another_stain():
    config = LocatorConfig(cell_diameter_frac=0.3)
    field = _smear(nucleus_rgb=LIGHT_BROWN_NUCLEUS, red_cells="sparse", red_cell_rgb=YELLOW_RED_CELL)
    boxes = locate_cells(field, config)
    assert len(boxes) == 1
    x1, y1, x2, y2 = boxes[0]
    assert x1 < 160 < x2 and y1 < 120 < y2
    # The same object among pink red cells is no nucleus of a Romanowsky stain: too light for its search.
    pink = _smear(nucleus_rgb=LIGHT_BROWN_NUCLEUS, red_cells="sparse", red_cell_rgb=PINK_RED_CELL)
    assert len(locate_cells(pink, config)) == 0
    assert len(locate_cells(field, LocatorConfig(cell_diameter_frac=0.3, other_stain_nucleus_od=2.0))) == 0


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_red_cells_alone_are_not_taken_for_nuclei(layout):
    # Overlapping red cells are twice as dense as one; lone ones stand out from the plasma.
    # Neither is a nucleus, in a field with no blue-purple nucleus to find.
    assert len(locate_cells(_smear(red_cells=layout), LocatorConfig(cell_diameter_frac=0.3))) == 0
    if layout == "sparse":  # lone red cells of another stain stay under its lower search
        yellow = _smear(red_cells=layout, red_cell_rgb=YELLOW_RED_CELL)
        assert len(locate_cells(yellow, LocatorConfig(cell_diameter_frac=0.3))) == 0


def test_boxes_are_in_frame_pixels_at_any_resolution():
    image = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    import cv2

    config = LocatorConfig()
    full = locate_cells(image, config)
    half = locate_cells(cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA), config)
    assert len(full) == len(half) == 1
    assert np.abs(full[0] / 2 - half[0]).max() < 6


def test_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="expected an"):
        locate_cells(np.zeros((10, 10), np.uint8), LocatorConfig())


def test_crop_is_square_centred_and_reflected_at_the_edge():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255  # left half white
    config = LocatorConfig(cell_diameter_frac=0.25, crop_context=1.0)
    crop = crop_cell(image, np.array([0, 40, 20, 60], np.float32), config, size=50)
    assert crop.shape == (50, 50, 3) and crop.dtype == np.uint8
    # The window reaches past the left edge: reflection fills it with white, not black.
    assert crop[:, :10].min() == 255
    black = crop_cell(image, np.array([0, 40, 20, 60], np.float32),
                      LocatorConfig(cell_diameter_frac=0.25, crop_context=1.0, edge_fill="black"), size=50)
    assert black[:, :10].max() == 0 and black[:, 30:].min() == 255
    tiny = crop_cell(
        np.full((8, 8, 3), 9, np.uint8),
        np.array([0, 0, 8, 8], np.float32),
        LocatorConfig(cell_diameter_frac=1.0, crop_context=3.0),
        size=16,
    )
    assert tiny.shape == (16, 16, 3) and (tiny == 9).all()


def test_voc_reader_drops_duplicates_and_degenerate_boxes(tmp_path: Path):
    xml = tmp_path / "a.xml"
    obj = (
        "<object><name>{}</name><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"
    )
    xml.write_text(
        "<annotation><size><width>100</width><height>80</height></size>"
        + obj.format("WBC", 10, 10, 50, 50)
        + obj.format("WBC", 10, 10, 50, 50)
        + obj.format("WBC", 60, 60, 60, 70)
        + obj.format("RBC", 1, 1, 9, 9)
        + obj.format("WBC", 70, 50, 130, 90)
        + "</annotation>"
    )
    boxes = read_voc_boxes(xml)
    assert boxes.tolist() == [[10, 10, 50, 50], [70, 50, 100, 80]]


def test_points_in_boxes_says_which_points_lie_in_any_box():
    boxes = np.array([[0, 0, 10, 10], [20, 20, 30, 40]], np.float32)
    points = np.array([[5, 5], [10, 0], [25, 39], [15, 15], [25, 41]], np.float32)
    assert points_in_boxes(points, boxes).tolist() == [True, True, True, False, False]  # edges count
    assert points_in_boxes(points, np.zeros((0, 4))).tolist() == [False] * 5


def test_small_cells_note_names_the_size_the_setting_and_what_to_do():
    note = small_cells_note(56.4, 75.0)
    assert note.startswith("cells about 56 px across, fewer than the 75 px the model learnt from")
    assert "locator.min_cell_diameter_px" in note and note.endswith("use a higher magnification")
    assert small_cells_note(56.4, 75.0, brief=True) == "cells small (56 px < 75): labels less sure"
    assert small_cells_note(75.0, 75.0) is None  # the training images' 5th percentile is not "small"
    assert small_cells_note(10.0, 0.0) is None  # 0: never said
