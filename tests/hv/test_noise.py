"""A camera's noise: read at the classifier's scale, said when it is above what the model learnt from."""

import numpy as np

from hv.config import Config
from hv.field_images import classify_image, noise_in_field
from hv.noise import noise_level, noisy_note
from hv.preprocess import read_image_rgb
from tests.conftest import SAMPLES
from tests.stream.fakes import FixedClassifier


def grainy(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """``image`` with Gaussian noise of ``sigma`` grey levels, as a camera at a high gain gives it."""
    noise = np.random.default_rng(seed).normal(0, sigma, image.shape)
    return np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)


def test_the_read_grows_with_the_noise_and_a_clean_field_reads_under_the_bar():
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    bar = Config().stream.noise_max
    reads = [noise_level(grainy(field, s), 179, 1.4, 224) for s in (0, 4, 8, 16)]
    assert reads[0] < bar < reads[2]
    assert reads == sorted(reads) and reads[3] > 1.7 * reads[2]  # about proportional once the grain dominates
    assert noisy_note(reads[0], bar) is None and noisy_note(reads[3], bar).startswith("camera noisy (noise ")
    assert noisy_note(reads[3], 0) is None  # 0: never said


def test_noise_a_crop_averages_away_is_not_counted():
    """The same grain on a camera of four times the pixels (cells four times larger, the crop shrunk to the
    model's input) reaches the classifier four times finer: it reads far lower."""
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))[:240, :320]
    large = np.repeat(np.repeat(field, 4, axis=0), 4, axis=1)
    assert noise_level(grainy(large, 8), 4 * 179, 1.4, 224) < 0.5 * noise_level(grainy(field, 8), 179, 1.4, 224)


def test_a_still_image_says_when_it_is_noisy():
    config = Config()
    field = read_image_rgb(str(SAMPLES / "BloodImage_00009.jpg"))
    fake = FixedClassifier(image_size=config.model.image_size)
    assert noise_in_field(classify_image(fake, field, config), config) is None
    assert "labels less sure" in noise_in_field(classify_image(fake, grainy(field, 16), config), config)
