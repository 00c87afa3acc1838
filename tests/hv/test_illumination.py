"""Uneven light (a vignette, a lamp off the axis): read from the plasma, divided out, and left alone when even."""

import dataclasses

import cv2
import numpy as np

from hv.config import Config
from hv.field_images import classify_image, uneven_light_in_field
from hv.field_of_view import FieldOfView, field_of_view, small_grey
from hv.illumination import RunningLight, darkest_lit, evened_still, flatten, light_surface, uneven_light
from hv.preprocess import field_view, read_image_rgb
from tests.conftest import SAMPLES
from tests.stream.fakes import FixedClassifier


def vignetted(image: np.ndarray, corners: float | tuple[float, float, float],
              centre: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` lit with ``corners`` of the centre's light left at the frame's corners (a fall-off with the
    square of the distance from ``centre``, the frame's centre unless given); three: each channel's."""
    height, width = image.shape[:2]
    cx, cy = centre if centre is not None else ((width - 1) / 2, (height - 1) / 2)
    y, x = np.mgrid[:height, :width]
    fall_off = (np.hypot(x - cx, y - cy) / np.hypot(width / 2, height / 2))[..., None] ** 2
    light = 1 - (1 - np.asarray(corners, np.float32)) * fall_off
    return (image * np.clip(light, 0, 1)).astype(np.uint8)


def read(image_rgb: np.ndarray) -> float:
    grey = small_grey(image_rgb, 320, cv2.COLOR_RGB2GRAY)
    view = field_of_view(grey)
    return darkest_lit(light_surface(grey, view), view)


def test_a_vignette_is_read_from_the_plasma_and_divided_out():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    assert read(field) > Config().locator.uneven_light_below  # a field as BCCD's camera gave it: even enough
    for corners in (0.6, 0.4):
        dim = vignetted(field, corners)
        assert abs(read(dim) - corners) < 0.1
        grey = small_grey(dim, 320, cv2.COLOR_RGB2GRAY)
        assert read(flatten(dim, light_surface(grey))) > 0.8


def test_dark_corners_are_not_taken_for_nuclei_and_even_light_is_left_exactly():
    """A view with no white cell (BloodImage_00009's top right): at 40 % light in its corners the locator's
    search for a dense nucleus of another stain took dark red cells for cells; evened, it finds none."""
    config = Config()
    view = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))[:240, 320:].copy()
    assert field_view(view, config)[1] == "not_located"
    dim = vignetted(view, 0.4)
    off = dataclasses.replace(config, locator=dataclasses.replace(config.locator, uneven_light_below=0))
    assert field_view(dim, off)[1] != "not_located"  # as it was: a dark corner located as a cell
    evened = evened_still(dim, config.locator.uneven_light_below, config.stream.motion_width_px).image
    assert evened is not dim and field_view(dim, config)[1] == "not_located"
    unevened = evened_still(dim, 0, config.stream.motion_width_px).image
    assert unevened is dim  # 0: never evened
    # Left exactly as it is when the light is even: the training labs' images see no change.
    assert evened_still(view, config.locator.uneven_light_below, config.stream.motion_width_px).image is view


def _plasma_tint(image_rgb: np.ndarray, corner: tuple[slice, slice]) -> np.ndarray:
    """The plasma's colour (its bright pixels' mean, each channel over their grey) in one part of ``image_rgb``."""
    part = image_rgb[corner].reshape(-1, 3).astype(np.float32)
    bright = part[part.mean(axis=1) >= np.percentile(part.mean(axis=1), 90)]
    return bright.mean(axis=0) / bright.mean()


def test_a_tinted_vignette_is_evened_channel_by_channel():
    """A phone camera's lens shading darkens the corners and tints them (red kept more than blue here): evened
    by the grey light alone the corners stay warm; by each channel's light their plasma takes the centre's colour."""
    config = Config()
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    shaded = vignetted(field, (0.55, 0.45, 0.4))
    centre, corner = (slice(180, 300), slice(240, 400)), (slice(0, 90), slice(0, 120))
    truth = _plasma_tint(field, corner)
    grey = small_grey(shaded, config.stream.motion_width_px, cv2.COLOR_RGB2GRAY)
    grey_only = flatten(shaded, light_surface(grey))
    still = evened_still(shaded, config.locator.uneven_light_below, config.stream.motion_width_px)
    assert still.evened_darkest is not None
    grey_error = np.abs(_plasma_tint(grey_only, corner) - truth).max()
    colour_error = np.abs(_plasma_tint(still.image, corner) - truth).max()
    assert grey_error > 0.05 and colour_error < 0.3 * grey_error  # the tint left by grey evening, mostly gone
    assert np.abs(_plasma_tint(still.image, centre) - _plasma_tint(field, centre)).max() < 0.03  # centre as it was
    # The stream reads the channels only where a frame's own read is uneven, and evens by them.
    light = RunningLight(config.locator.uneven_light_below, every=1, window=1)
    assert light.update(small_grey(field, 320, cv2.COLOR_RGB2GRAY), None, field) is None and light.colour is None
    assert light.update(grey, None, shaded) is not None and light.colour is not None and light.colour.shape[-1] == 3


def test_a_round_view_is_read_inside_and_its_shadow_stays_dark():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    y, x = np.mgrid[:480, :640]
    stop = np.hypot(x - 319.5, y - 239.5) > 260
    dim = vignetted(field, 0.3, centre=(420, 240))  # a lamp off the axis: darker on the left
    dim[stop] = 0
    grey = small_grey(dim, 320, cv2.COLOR_RGB2GRAY)
    view = field_of_view(grey)
    assert view is not None
    surface = uneven_light(grey, Config().locator.uneven_light_below, view)
    assert surface is not None
    left, right = surface[:, : surface.shape[1] // 4].max(), surface[:, -surface.shape[1] // 4 :].max()
    assert left < right  # the gradient's direction is read
    flat = flatten(dim, surface)
    assert flat[stop].max() == 0  # black stays black: nothing raised in the shadow
    assert flat[240, 80:120].mean() > 1.3 * dim[240, 80:120].mean()  # the dim left side of the view is raised


def test_a_stream_judges_the_median_of_its_reads_and_forgets_them_on_restart():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    even, dim = (small_grey(im, 320, cv2.COLOR_RGB2GRAY) for im in (field, vignetted(field, 0.4)))
    light = RunningLight(0.6, every=1, window=3)
    assert light.update(even) is None and light.darkest > 0.6
    assert light.update(dim) is None  # one dim read among even ones: the median is still even
    assert light.update(dim) is not None and light.darkest < 0.6  # two of three: uneven
    light.restart()
    assert light.update(even) is None  # the dim reads are forgotten
    assert RunningLight(0).update(dim) is None  # 0: off


def graded(image: np.ndarray, left: float, right: float) -> np.ndarray:
    """``image`` lit by a lamp off to one side: ``left`` of the light at the left edge, ``right`` at the right."""
    light = np.linspace(left, right, image.shape[1], dtype=np.float32)[None, :, None]
    return (image * light).astype(np.uint8)


def test_a_cell_in_a_part_too_dim_to_even_is_not_whole():
    """Lit from one side, the far side is raised over 2.5 times when evened, its noise too: a cell there is
    marked cut (the stream tracks it and classifies it once it is seen in better light)."""
    config = Config()
    field = read_image_rgb(str(SAMPLES / "BloodImage_00043.jpg"))  # a whole cell at the top left, one cut at the
    fake = FixedClassifier(image_size=config.model.image_size)  # right edge

    def left_cell_whole(image: np.ndarray) -> bool:
        cells = classify_image(fake, image, config)
        return bool(cells.whole[int(np.argmin(cells.boxes[:, 0]))])

    assert left_cell_whole(field)
    assert left_cell_whole(graded(field, 1.0, 0.25))  # the lamp on its side: evened, and whole
    assert not left_cell_whole(graded(field, 0.25, 1.0))  # the lamp on the far side: too dim to even
    # The user is told, with what to do; an evenly lit field says nothing.
    note = uneven_light_in_field(classify_image(fake, graded(field, 0.25, 1.0), config))
    assert note.startswith("lit unevenly (its darkest part at ") and "marked cut" in note
    assert uneven_light_in_field(classify_image(fake, field, config)) is None


def test_a_view_with_no_wholly_lit_point_is_judged_even_and_nothing_fails():
    """A stop closed down to less than one cell of the light's grid: nothing to judge or even (before the guard,
    the stream's judgement of its earlier reads took the minimum of nothing and failed)."""
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    grey = small_grey(field, 320, cv2.COLOR_RGB2GRAY)
    shut = FieldOfView(np.ones(grey.shape, bool), np.zeros(grey.shape, np.float32))
    assert darkest_lit(np.ones((24, 32), np.float32), shut) == 1.0
    light = RunningLight(0.6, every=1)
    assert light.update(small_grey(vignetted(field, 0.4), 320, cv2.COLOR_RGB2GRAY)) is not None  # uneven
    assert light.update(grey, shut) is None and light.darkest == 1.0
