"""Training-only augmentation. Never part of the model that is exported.

A cell on a slide has no up or down, so any rotation and both flips are fair; stain
colour and illumination vary between labs, slides and cameras, which is what colour
jitter imitates. TRAIN already holds rotated and shifted copies of each field, so the
extra augmentation mostly has to cover colour and scale.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from hv.config import AugmentConfig

# Stain vectors of haematoxylin, eosin and a residual (DAB) channel in optical density
# (Ruifrok and Johnston, 2001; the rows of scikit-image's rgb_from_hed). Romanowsky stains are
# not H&E, but their blue-purple and pink dyes lie close to the same two directions, which is
# what a jitter needs.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)
# The grey axis of optical density: a turn about it changes a stain's hue, not how much light it takes.
_GREY = np.full(3, 1 / np.sqrt(3), np.float32)


def turned_about_grey(vector: np.ndarray, angle):
    """The stain vector ``vector`` (3,) turned by ``angle`` ((b,) radians) about the grey axis: (b, 3).

    Rodrigues' rotation. It keeps the vector's projection on the grey axis, so the turned stain
    takes the same total optical density over the three channels: another hue at the same depth.
    """
    along = float(vector @ _GREY) * _GREY
    across = np.cross(_GREY, vector).astype(np.float32)
    cos, sin = ops.cos(angle)[:, None], ops.sin(angle)[:, None]
    return vector * cos + across * sin + along * (1.0 - cos)


@keras.saving.register_keras_serializable(package="hv")
class RandomStain(layers.Layer):
    """Jitter stain amounts and white balance, as another lab's staining and camera would.

    Each image goes to optical density, is split into haematoxylin, eosin and residual
    amounts (colour deconvolution), each amount is scaled by a factor in ``1 ± scale`` and
    shifted by up to ``± shift``, and the result goes back to RGB (Tellez et al., 2018,
    "HED" augmentation); then each RGB channel is multiplied by a gain in
    ``1 ± white_balance``. With ``nucleus_hue``, the way back uses a haematoxylin vector
    turned about the grey axis by up to ``nucleus_hue`` x half a turn either way, drawn per
    image: the nuclei (and the blue of cytoplasm) take another hue at the same depth, as
    another lab's nucleus stain would draw them, while the eosin vector, whose colour tells
    an eosinophil's granules from a neutrophil's, is kept. Shapes and labels are unchanged;
    the output stays in [0, 255].

    Args:
        scale: relative change of each stain's amount.
        shift: absolute change of each stain's amount, in optical density units.
        white_balance: relative change of each colour channel's gain.
        nucleus_hue: the haematoxylin vector's widest turn, as a share of half a turn; 0 = off.
        seed: seed of the layer's random draws.
    """

    def __init__(self, scale: float = 0.2, shift: float = 0.03, white_balance: float = 0.1,
                 nucleus_hue: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.shift, self.white_balance, self.seed = scale, shift, white_balance, seed
        self.nucleus_hue = nucleus_hue
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training:
            return images
        batch = ops.shape(images)[0]
        draw_shape = (batch, 1, 1, 3)
        density = -ops.log((ops.cast(images, "float32") + 1.0) / 256.0)
        stains = ops.einsum("bhwc,cd->bhwd", density, HED_FROM_RGB)
        factor = keras.random.uniform(draw_shape, 1 - self.scale, 1 + self.scale, seed=self.seed_generator)
        offset = keras.random.uniform(draw_shape, -self.shift, self.shift, seed=self.seed_generator)
        if self.nucleus_hue:
            angle = keras.random.uniform((batch,), -np.pi * self.nucleus_hue, np.pi * self.nucleus_hue,
                                         seed=self.seed_generator)
            others = ops.broadcast_to(ops.convert_to_tensor(RGB_FROM_HED[1:]), (batch, 2, 3))
            vectors = ops.concatenate([turned_about_grey(RGB_FROM_HED[0], angle)[:, None], others], axis=1)
            density = ops.einsum("bhwd,bdc->bhwc", stains * factor + offset, vectors)
        else:
            density = ops.einsum("bhwd,dc->bhwc", stains * factor + offset, RGB_FROM_HED)
        rgb = 256.0 * ops.exp(-density) - 1.0
        gain = keras.random.uniform(draw_shape, 1 - self.white_balance, 1 + self.white_balance,
                                    seed=self.seed_generator)
        return ops.clip(rgb * gain, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "shift": self.shift,
                "white_balance": self.white_balance, "nucleus_hue": self.nucleus_hue, "seed": self.seed}


@keras.saving.register_keras_serializable(package="hv")
class RandomBlur(layers.Layer):
    """Blur each batch with a Gaussian of a random width, as a blurrier camera or objective would.

    Labs differ in sharpness as much as in colour: at the model's input, blood-cells/ crops
    (320x240 fields, enlarged) have under a tenth of the Laplacian variance of PBC's
    (CellaVision) crops, and PBC blurred with sigma 2-2.5 pixels matches them
    (``benchmarks/lab_sharpness.py``).
    A model that learnt eosinophils from sharp granules does not find them in a haze. Each
    batch draws sigma from [0, ``max_sigma``] pixels; the blur is separable, with the image
    reflected at its border so the edge does not darken.

    Args:
        max_sigma: the widest Gaussian, in pixels of the model input; 0 turns it off.
        seed: seed of the layer's random draws.
    """

    def __init__(self, max_sigma: float = 2.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_sigma, self.seed = max_sigma, seed
        self.radius = max(1, int(np.ceil(3 * max_sigma)))  # the kernel covers +-3 sigma of the widest
        self.seed_generator = keras.random.SeedGenerator(seed)

    def kernel(self, sigma):
        """The normalised 1-D Gaussian of width ``sigma`` (a tensor), on -radius..radius."""
        offsets = ops.arange(-self.radius, self.radius + 1, dtype="float32")
        weights = ops.exp(-0.5 * ops.square(offsets / ops.maximum(sigma, 1e-3)))
        return weights / ops.sum(weights)

    def call(self, images, training=True):
        if not training or not self.max_sigma:
            return images
        images = ops.cast(images, "float32")
        sigma = keras.random.uniform((), 0.0, self.max_sigma, seed=self.seed_generator)
        weights = self.kernel(sigma)
        channels = images.shape[-1]
        r = self.radius
        padded = ops.pad(images, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
        across = ops.tile(ops.reshape(weights, (1, -1, 1, 1)), (1, 1, channels, 1))
        down = ops.tile(ops.reshape(weights, (-1, 1, 1, 1)), (1, 1, channels, 1))
        blurred = ops.depthwise_conv(padded, across, strides=1, padding="valid")
        return ops.depthwise_conv(blurred, down, strides=1, padding="valid")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_sigma": self.max_sigma, "seed": self.seed}


@keras.saving.register_keras_serializable(package="hv")
class RandomGrain(layers.Layer):
    """Add a camera's grain: Gaussian noise of a random strength, on half the images of a batch.

    A dim view at a high gain adds noise that no training image holds (the noisiest, blood-cells/TRAIN's
    JPEG copies, read 1.6 grey levels at the crop's scale; a camera at 8 and 16 grey levels took the
    stream's labels from 92 to 86 and 63 %: BENCHMARKS.md, "A noisy camera"). Each image draws its own
    standard deviation from [0, ``max_sigma``] grey levels, half the images none, so clean views stay
    what most of a batch looks like. The grain is drawn at the input's pixels or, for a whole batch at
    a time, at half of them and enlarged, as when the crop enlarges a camera's pixels (a blood-cells/
    field's crop is enlarged over twice); the same noise on the three channels and some apart, as a colour
    sensor's demosaicing leaves it. The output stays in [0, 255].

    Args:
        max_sigma: the strongest grain, in grey levels (0-255) of the model input; 0 turns it off.
        seed: seed of the layer's random draws.
    """

    def __init__(self, max_sigma: float = 8.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_sigma, self.seed = max_sigma, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=True):
        if not training or not self.max_sigma:
            return images
        images = ops.cast(images, "float32")
        batch, height, width = ops.shape(images)[0], images.shape[1], images.shape[2]
        sigma = keras.random.uniform((batch, 1, 1, 1), 0.0, self.max_sigma, seed=self.seed_generator)
        noisy = ops.cast(keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator) < 0.5, "float32")
        coarse = keras.random.uniform((), seed=self.seed_generator) < 0.5
        drawn = keras.random.normal((batch, (height + 1) // 2, (width + 1) // 2, 4), seed=self.seed_generator)
        enlarged = ops.image.resize(drawn, (height, width), interpolation="bilinear")
        fine = keras.random.normal((batch, height, width, 4), seed=self.seed_generator)
        # Enlarging twice, bilinear, weighs neighbours 0.75 / 0.25 along each axis: the spread falls to
        # 0.625 of the drawn grain's, scaled back to sigma.
        grain = ops.where(coarse, enlarged / 0.625, fine)
        # Three channels: 0.8 of a grain they share (luminance) and 0.6 of their own (0.8² + 0.6² = 1).
        shared, own = grain[..., :1], grain[..., 1:]
        return ops.clip(images + sigma * noisy * (0.8 * shared + 0.6 * own), 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_sigma": self.max_sigma, "seed": self.seed}


def build_augmenter(config: AugmentConfig, seed: int) -> keras.Sequential:
    """A Sequential of Keras ``Random*`` layers working on float [0, 255] RGB batches."""
    steps: list[layers.Layer] = []
    flip = {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
            (False, True): "vertical"}.get((config.horizontal_flip, config.vertical_flip))
    if flip:
        steps.append(layers.RandomFlip(flip, seed=seed))
    if config.rotation:
        steps.append(layers.RandomRotation(config.rotation, fill_mode="reflect", seed=seed + 1))
    if config.zoom:
        steps.append(layers.RandomZoom(config.zoom, fill_mode="reflect", seed=seed + 2))
    if config.translate:
        steps.append(layers.RandomTranslation(config.translate, config.translate, fill_mode="reflect", seed=seed + 3))
    if config.blur:
        steps.append(RandomBlur(config.blur, seed=seed + 9))
    if config.brightness:
        steps.append(layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))
    if config.contrast:
        steps.append(layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 5))
    if config.saturation:
        steps.append(layers.RandomSaturation((0.5 - config.saturation / 2, 0.5 + config.saturation / 2),
                                             value_range=(0, 255), seed=seed + 6))
    if config.hue:
        steps.append(layers.RandomHue(config.hue, value_range=(0, 255), seed=seed + 7))
    if config.stain_scale or config.stain_shift or config.white_balance or config.nucleus_hue:
        steps.append(RandomStain(config.stain_scale, config.stain_shift, config.white_balance,
                                 config.nucleus_hue, seed=seed + 8))
    if config.grain:  # last: the camera adds its noise to whatever the stain and the lamp drew
        steps.append(RandomGrain(config.grain, seed=seed + 10))
    return keras.Sequential(steps, name="augment")
