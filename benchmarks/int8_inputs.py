"""What the int8 benchmarks all start from: the config's calibration crops and TEST's crops."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hv.config import Config
from mobile.export import calibration_crops
from training.data import Split, discover
from training.evaluate import crop_fields


@dataclass(frozen=True)
class Int8Inputs:
    train: Split
    calibration: np.ndarray  # the crops hv export calibrates int8 on
    test_crops: np.ndarray  # every TEST field, cropped as the stream crops it
    test_labels: np.ndarray


def load_int8_inputs(config: Config) -> Int8Inputs:
    train, _ = discover(config.data.train_dir)
    test, _ = discover(config.data.test_dir)
    crops, _ = crop_fields(list(test.paths), config)
    return Int8Inputs(train, calibration_crops(train, config), crops, np.array(test.labels))
