import cv2
import numpy as np
import pytest

from hv.config import Config, DataConfig
from hv.field_images import classify_image
from hv.locator import locate_cells
from hv.preprocess import ImageReadError, field_to_model_input, field_view, read_image_rgb, to_model_batch
from tests.conftest import SAMPLES
from tests.stream.fakes import FixedClassifier


def test_read_image_errors_name_the_file(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match="empty.jpg: empty file"):
        read_image_rgb(str(empty))
    with pytest.raises(ImageReadError, match="notes.png: not a decodable image"):
        read_image_rgb(str(text))


def test_an_image_without_colour_is_refused_with_the_reason(tmp_path):
    # A monochrome camera's picture of a smear: the nuclei are still dark, but the stains' colours, which
    # tell the classes apart, are gone (the locator would still find cells and the classifier guess).
    field = cv2.imread(str(SAMPLES / "BloodImage_00009.jpg"))
    grey = tmp_path / "mono.png"
    cv2.imwrite(str(grey), cv2.cvtColor(field, cv2.COLOR_BGR2GRAY))
    with pytest.raises(ImageReadError, match=r"mono.png: no colour \(a greyscale image"):
        read_image_rgb(str(grey))
    faded = tmp_path / "faded.png"  # a pale stain keeps enough colour: only R = G = B is refused
    cv2.imwrite(str(faded), (0.3 * field + 0.7 * cv2.cvtColor(cv2.cvtColor(field, cv2.COLOR_BGR2GRAY),
                                                               cv2.COLOR_GRAY2BGR)).astype(np.uint8))
    assert read_image_rgb(str(faded)).shape == (480, 640, 3)


def test_read_image_is_rgb():
    image = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    # A smear's background is pale and its red cells are red: mean R >= mean B away from the stain.
    assert image[..., 0].mean() > image[..., 2].mean() - 10


def test_field_input_modes():
    image = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    cell, located = field_to_model_input(image, Config())
    assert located and cell.shape == (224, 224, 3)
    field, _ = field_to_model_input(image, Config(data=DataConfig(input="field")))
    assert field.shape == (224, 224, 3)
    blank, located = field_to_model_input(np.full((240, 320, 3), 220, np.uint8), Config())
    assert not located and blank.shape == (224, 224, 3)


def test_field_view_says_when_the_image_edge_cuts_the_cell():
    config = Config()
    image = read_image_rgb(str(SAMPLES / "BloodImage_00021.jpg"))  # its one white cell well inside the field
    assert field_view(image, config)[1] == "whole"
    x1, _, x2, _ = locate_cells(image, config.locator)[0]
    cut = image[:, int((x1 + x2) / 2):]  # the left half of the cell is outside this picture
    crop, view = field_view(cut, config)
    assert view == "cut" and crop.shape == (224, 224, 3)
    assert field_view(np.full((240, 320, 3), 220, np.uint8), config)[1] == "not_located"
    assert field_view(image, Config(data=DataConfig(input="field")))[1] == "field"


def through_stop(image: np.ndarray, centre: tuple[float, float], radius: float) -> np.ndarray:
    """``image`` seen through a round field stop (an eyepiece, a phone adapter): black outside the disc."""
    y, x = np.mgrid[: image.shape[0], : image.shape[1]]
    light = np.clip(radius - np.hypot(x - centre[0], y - centre[1]) + 0.5, 0, 1)[..., None]
    return (image * light).astype(np.uint8)


def test_a_cell_the_rim_of_a_round_view_may_cut_is_marked_cut_in_a_still_image():
    """The stream's rule for a round view holds for photos too (``hv classify``, the Image tab, ``hv evaluate``):
    the same whole cell is "cut" when the stop's rim passes within the margin, "whole" when it lies well inside."""
    config = Config()
    image = read_image_rgb(str(SAMPLES / "BloodImage_00021.jpg"))  # its one white cell lies right of and below
    (x1, y1, x2, y2), = locate_cells(image, config.locator)  # the centre, well clear of the image edges
    corner = np.hypot(x2 - 320, y2 - 240)  # the box corner farthest from the frame's centre
    rim_near = through_stop(image, (320, 240), corner + 6)  # the whole cell lit, the rim 6 px beyond its box
    centred = through_stop(image, ((x1 + x2) / 2, (y1 + y2) / 2), 1.1 * corner)  # the cell in the middle of the view
    assert field_view(image, config)[1] == "whole"
    assert field_view(rim_near, config)[1] == "cut"
    assert field_view(centred, config)[1] == "whole"
    fake = FixedClassifier(image_size=config.model.image_size)
    assert classify_image(fake, rim_near, config).whole.tolist() == [False]
    assert classify_image(fake, centred, config).whole.tolist() == [True]


def test_model_batch_keeps_raw_pixel_values():
    crops = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 3), dtype=np.uint8)
    batch = to_model_batch(crops)
    assert batch.dtype == np.float32 and np.array_equal(batch, crops)  # no hidden /255
    with pytest.raises(ValueError, match="expected"):
        to_model_batch(crops[0])
