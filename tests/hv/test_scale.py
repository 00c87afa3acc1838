import cv2
import numpy as np
import pytest

from hv.config import LocatorConfig
from hv.locator import RunningCellScale, cell_diameter_px, crop_cell, locate_cells
from hv.preprocess import read_image_rgb
from hv.scale import red_cell_diameter_px
from tests.conftest import SAMPLES, draw_field

# Two synthetic labs: one like blood-cells/ (white cells 0.28 of the width, neutral colour),
# one like pbc/ (0.42 of the width: a higher magnification, and a warm cast).
LABS = {"a": {"cell_frac": 0.28, "cast": (1.0, 1.0, 1.0)}, "b": {"cell_frac": 0.42, "cast": (1.05, 0.95, 0.85)}}


@pytest.mark.parametrize("lab", sorted(LABS))
@pytest.mark.parametrize("width", [240, 480, 960])
def test_auto_scale_recovers_a_known_scale(lab, width):
    rng = np.random.default_rng(width)
    for label in range(4):
        image = draw_field(rng, label, width=width, height=width * 3 // 4, **LABS[lab])
        expected = LABS[lab]["cell_frac"] * width
        assert cell_diameter_px(image, LocatorConfig()) == pytest.approx(expected, rel=0.1), (lab, label)


def test_both_labs_give_the_same_crop_of_the_same_cell():
    """What the classifier sees depends on the cell, not on the lab's magnification."""
    crops = {}
    for lab, settings in LABS.items():
        image = draw_field(np.random.default_rng(5), 2, width=480, height=360, **settings)
        diameter = cell_diameter_px(image, LocatorConfig())
        boxes = locate_cells(image, LocatorConfig(), diameter)
        assert len(boxes) == 1, lab
        crop = crop_cell(image, boxes[0], LocatorConfig(), 64, diameter)
        crops[lab] = crop.astype(np.float32) / np.array(settings["cast"], np.float32)  # undo the cast
    # The nucleus (dark pixels) covers the same share of both crops.
    dark = {lab: (crop.mean(axis=2) < 150).mean() for lab, crop in crops.items()}
    assert dark["a"] == pytest.approx(dark["b"], rel=0.2)
    fixed = LocatorConfig(cell_diameter_frac=0.28)  # the old fixed setting gets lab b wrong
    image_b = draw_field(np.random.default_rng(5), 2, width=480, height=360, **LABS["b"])
    box = locate_cells(image_b, fixed)[0]
    crop_fixed = crop_cell(image_b, box, fixed, 64).astype(np.float32) / np.array(LABS["b"]["cast"], np.float32)
    assert (crop_fixed.mean(axis=2) < 150).mean() > 1.5 * dark["a"]


def test_scale_of_real_fields_matches_their_red_cells():
    for path in sorted(SAMPLES.glob("*.jpg")):
        image = read_image_rgb(str(path))
        red = red_cell_diameter_px(image)
        # BCCD red cells are 95-115 px across at 640 px (their annotated boxes); a few fields
        # are one clump with no measurable cell, and then the fallback width share applies.
        if red is not None:
            assert 75 < red < 125, path.name
        diameter = cell_diameter_px(image, LocatorConfig())
        assert 0.2 * 640 < diameter < 0.4 * 640, path.name


def test_frames_without_red_cells_fall_back():
    config = LocatorConfig()
    for image in (np.full((240, 320, 3), 215, np.uint8), np.zeros((240, 320, 3), np.uint8),
                  np.zeros((8, 8, 3), np.uint8)):
        assert red_cell_diameter_px(image) is None
        assert cell_diameter_px(image, config) == pytest.approx(config.fallback_diameter_frac * image.shape[1])


def test_a_fixed_fraction_is_used_as_it_is():
    image = draw_field(np.random.default_rng(0), 1, width=320, height=240, cell_frac=0.4)
    assert cell_diameter_px(image, LocatorConfig(cell_diameter_frac=0.2)) == pytest.approx(64)


def _measurements(monkeypatch, values):
    """Make the stream's per-frame measurement return ``values`` in turn."""
    import hv.locator

    calls = []
    values = iter(values)

    def measured(image, config):
        calls.append(1)
        return next(values)

    monkeypatch.setattr(hv.locator, "cell_diameter_px", measured)
    return calls


def test_stream_scale_is_a_running_median_measured_every_few_frames(monkeypatch):
    calls = _measurements(monkeypatch, [100.0, 300.0, 110.0, 105.0])
    scale = RunningCellScale(LocatorConfig(), every=5, window=3)
    frame = np.zeros((10, 10, 3), np.uint8)
    seen = [scale.update(frame) for _ in range(16)]
    assert len(calls) == 4  # frames 0, 5, 10, 15
    assert seen[0] == 100 and seen[5] == 200 and seen[10] == 110  # one outlier does not move the median far
    assert seen[15] == 110


def test_stream_scale_restarts_from_the_next_frame(monkeypatch):
    calls = _measurements(monkeypatch, [100.0, 102.0, 150.0, 160.0])
    scale = RunningCellScale(LocatorConfig(), every=5, window=10)
    frame = np.zeros((10, 10, 3), np.uint8)
    before = [scale.update(frame) for _ in range(7)]  # measured on frames 0 and 5
    scale.restart()  # another objective: the old measurements say nothing about this one
    after = [scale.update(frame) for _ in range(6)]  # measured at once, and 5 frames on
    assert len(calls) == 4
    assert before[-1] == 101.0 and after[0] == 150.0 and after[-1] == 155.0


def test_tiny_frames_crop_without_hanging():
    config = LocatorConfig()
    for shape in ((1, 1), (1, 50), (50, 1), (2, 2)):
        image = np.full((*shape, 3), 200, np.uint8)
        crop = crop_cell(image, np.array([0, 0, shape[1], shape[0]], np.float32), config, 32)
        assert crop.shape == (32, 32, 3)
        assert locate_cells(image, config).shape == (0, 4)


def test_a_resized_copy_measures_half_the_size():
    image = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    half = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
    full_d, half_d = cell_diameter_px(image, LocatorConfig()), cell_diameter_px(half, LocatorConfig())
    assert full_d / 2 == pytest.approx(half_d, rel=0.1)
