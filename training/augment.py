"""Training-only augmentation. Never part of the model that is exported.

A cell on a slide has no up or down, so any rotation and both flips are fair; stain
colour and illumination vary between labs, slides and cameras, which is what colour
jitter imitates. TRAIN already holds rotated and shifted copies of each field, so the
extra augmentation mostly has to cover colour and scale.
"""

from __future__ import annotations

import keras
from keras import layers

from hv.config import AugmentConfig


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
    if config.brightness:
        steps.append(layers.RandomBrightness(config.brightness, value_range=(0, 255), seed=seed + 4))
    if config.contrast:
        steps.append(layers.RandomContrast(config.contrast, value_range=(0, 255), seed=seed + 5))
    if config.saturation:
        steps.append(layers.RandomSaturation((0.5 - config.saturation / 2, 0.5 + config.saturation / 2),
                                             value_range=(0, 255), seed=seed + 6))
    if config.hue:
        steps.append(layers.RandomHue(config.hue, value_range=(0, 255), seed=seed + 7))
    return keras.Sequential(steps, name="augment")
