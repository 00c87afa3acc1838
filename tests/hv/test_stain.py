import dataclasses

import numpy as np
import pytest

from hv.config import LocatorConfig
from hv.locator import crop_cell, crop_cell_recoloured, locate_cells
from hv.preprocess import read_image_rgb
from hv.stain import (
    AS_IS,
    LAMP,
    REFERENCE_PLASMA_OD,
    REFERENCE_RED_OD,
    STAIN,
    corrected_stain,
    lamp_like_training,
    optical_density,
    recoloured,
    red_cells_pink,
    rotation_between,
    stain_anchors,
    to_training_stain,
)
from tests.conftest import SAMPLES
from tests.stain_shifts import restained


@pytest.fixture(scope="module")
def field_crop():
    """A BCCD field's white cell, cropped as training crops it (stain correction off)."""
    image = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    config = LocatorConfig(stain_correction="off")
    return crop_cell(image, locate_cells(image, config)[0], config, 96)


def test_rotation_turns_one_direction_onto_another_and_keeps_lengths():
    turn = rotation_between([0.2, 0.5, 0.85], REFERENCE_RED_OD)
    target = REFERENCE_RED_OD / np.linalg.norm(REFERENCE_RED_OD)
    assert np.allclose(turn @ (np.array([0.2, 0.5, 0.85]) / np.linalg.norm([0.2, 0.5, 0.85])), target)
    assert np.allclose(turn @ turn.T, np.eye(3))
    assert np.allclose(rotation_between(target, target), np.eye(3))


def test_a_pink_crop_is_left_exactly_as_it_is(field_crop):
    assert red_cells_pink(field_crop)
    assert corrected_stain(field_crop) is field_crop


def test_another_stain_is_turned_back_towards_the_training_colours(field_crop):
    brown = restained(field_crop)
    assert not red_cells_pink(brown)
    corrected = corrected_stain(brown)
    assert red_cells_pink(corrected)
    # The red cells' colour now points where the training labs' does, and the crop's stains (density
    # above each one's plasma) lie much nearer the unshifted crop's than the brown-red ones did.
    red, _ = stain_anchors(corrected)
    assert float(red @ REFERENCE_RED_OD / np.linalg.norm(REFERENCE_RED_OD)) > 0.995

    def stains(image):
        return optical_density(image) - stain_anchors(image)[1]

    distance = lambda image: np.abs(stains(image) - stains(field_crop)).mean()  # noqa: E731
    assert distance(corrected) < 0.65 * distance(brown)


def test_the_turn_keeps_each_pixels_density_above_the_plasma(field_crop):
    brown = restained(field_crop)
    _, plasma_before = stain_anchors(brown)
    _, plasma_after = stain_anchors(to_training_stain(brown))
    before = np.linalg.norm(optical_density(brown) - plasma_before, axis=-1)
    after = np.linalg.norm(optical_density(to_training_stain(brown)) - plasma_after, axis=-1)
    unclipped = (brown > 3).all(axis=-1) & (brown < 252).all(axis=-1)
    assert np.median(np.abs(after - before)[unclipped]) < 0.03


def test_blank_and_black_crops_pass_through():
    black = np.zeros((32, 32, 3), np.uint8)
    grey = np.full((32, 32, 3), 200, np.uint8)
    assert corrected_stain(black) is black
    assert np.array_equal(to_training_stain(grey), grey)


def test_crop_cell_corrects_only_with_the_setting_on():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    image = restained(field)
    auto = LocatorConfig()
    off = dataclasses.replace(auto, stain_correction="off")
    box = locate_cells(field, auto)[0]  # where the cell is: the geometry is the stain's to keep
    as_is = crop_cell(image, box, off, 96)
    corrected = crop_cell(image, box, auto, 96)
    assert not red_cells_pink(as_is) and red_cells_pink(corrected)
    assert np.array_equal(corrected, to_training_stain(as_is))


@pytest.mark.parametrize("gains", [(1.0, 0.85, 0.62), (0.62, 0.85, 1.0)], ids=["warm lamp", "cool lamp"])
def test_a_lamp_of_another_colour_gets_the_training_plasma_and_no_turn(field_crop, gains):
    lit = np.clip(field_crop * np.array(gains), 0, 255).astype(np.uint8)
    assert red_cells_pink(lit) and not lamp_like_training(lit)
    corrected = corrected_stain(lit)
    assert lamp_like_training(corrected)
    red_before, _ = stain_anchors(lit)
    red_after, plasma_after = stain_anchors(corrected)
    assert float(red_before @ red_after) > 0.999  # the stain's colours are not turned
    assert np.abs(plasma_after - REFERENCE_PLASMA_OD).max() < 0.03
    # Only the lamp changes: above the plasma the stains are the crop's own, up to 8-bit rounding.
    def stains(image):
        return optical_density(image) - stain_anchors(image)[1]

    assert np.abs(stains(corrected) - stains(field_crop)).mean() < 0.03
    assert lamp_like_training(field_crop) and corrected_stain(field_crop) is field_crop


def test_recoloured_says_which_correction_a_crop_got(field_crop):
    same, how = recoloured(field_crop)
    assert how == AS_IS and same is field_crop
    brown = restained(field_crop)
    turned, how = recoloured(brown)
    assert how == STAIN and np.array_equal(turned, corrected_stain(brown))
    lit = np.clip(field_crop * np.array([1.0, 0.85, 0.62]), 0, 255).astype(np.uint8)
    replaced, how = recoloured(lit)
    assert how == LAMP and np.array_equal(replaced, corrected_stain(lit))
    black = np.zeros((32, 32, 3), np.uint8)
    same, how = recoloured(black)
    assert how == AS_IS and same is black


def test_crop_cell_recoloured_names_the_correction_only_with_the_setting_on():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    auto = LocatorConfig()
    off = dataclasses.replace(auto, stain_correction="off")
    box = locate_cells(field, auto)[0]
    assert crop_cell_recoloured(field, box, auto, 96)[1] == AS_IS
    crop, how = crop_cell_recoloured(restained(field), box, auto, 96)
    assert how == STAIN and np.array_equal(crop, crop_cell(restained(field), box, auto, 96))
    assert crop_cell_recoloured(restained(field), box, off, 96)[1] == AS_IS


def test_always_turns_every_crop_and_still_says_what_its_colours_called_for(field_crop):
    turned, how = recoloured(field_crop, always=True)
    assert how == AS_IS and not np.array_equal(turned, field_crop)  # a training-lab crop is turned too
    red, plasma = stain_anchors(turned)
    assert float(red @ (REFERENCE_RED_OD / np.linalg.norm(REFERENCE_RED_OD))) > 0.99
    assert np.abs(plasma - REFERENCE_PLASMA_OD).max() < 0.03
    brown_turned, how = recoloured(restained(field_crop), always=True)
    assert how == STAIN and np.array_equal(brown_turned, corrected_stain(restained(field_crop)))
