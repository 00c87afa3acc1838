"""Whether a config cuts the crops a model was trained on.

A model learns from crops cut one way: the window's context around the cell, the fill
beyond the frame edge and the stain correction (with ``"always"`` every training crop was
recoloured). Given crops cut another way it sees inputs unlike any it learnt from, and its
answers get worse without a sign. The settings travel with the model: ``hv train``'s
config beside a ``.keras`` model (``training.heldout.saved_config``), the app package's
``model.json`` (``crop``) beside a ``.tflite`` one. The cell scale is left out on purpose:
``locator.cell_diameter_frac`` is the setting a user changes for their own microscope.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from hv.config import Config, LocatorConfig, override
from training.data import DataError
from training.heldout import saved_config

log = logging.getLogger(__name__)

# The locator settings that change what a crop looks like to the model.
CROP_KEYS = ("crop_context", "edge_fill", "stain_correction")


def trained_crop(model_path: str | Path) -> dict:
    """The ``CROP_KEYS`` settings a model was trained with, from the file beside it; {} if none says.

    A model saved before a setting existed does not name it, and is not checked on it.
    """
    path = Path(model_path)
    if path.suffix == ".tflite":
        package = path.parent / "model.json"
        try:
            crop = json.loads(package.read_text())["crop"] if package.is_file() else {}
        except (ValueError, KeyError, TypeError):
            log.warning("%s: not an app package description with a 'crop' section; its crop settings are not "
                        "checked against the config", package)
            return {}
    else:
        try:
            found = saved_config(path)
        except DataError as exc:  # a broken config beside the model: say so, but the model may still be used
            log.warning("%s; its crop settings are not checked against the config", exc)
            return {}
        crop = found[1].get("locator", {}) if found else {}
    if not isinstance(crop, dict):
        return {}
    return {key: crop[key] for key in CROP_KEYS if key in crop}


def crop_differences(model_path: str | Path, locator: LocatorConfig) -> dict:
    """The crop settings the model was trained with that ``locator`` does not have, with the model's values."""
    return {key: value for key, value in trained_crop(model_path).items() if value != getattr(locator, key)}


def crop_mismatches(model_path: str | Path, locator: LocatorConfig) -> list[str]:
    """One line per crop setting the model was trained with that ``locator`` does not have."""
    return [f"locator.{key} = {value!r} (the config has {getattr(locator, key)!r})"
            for key, value in crop_differences(model_path, locator).items()]


def mismatch_text(model_path: str | Path, mismatches: list[str]) -> str:
    """What is wrong and what to do, for a warning or an error."""
    return (f"{model_path} was trained on crops cut with {'; '.join(mismatches)}: set these in the config you "
            "pass (hv --config FILE ...) as the model was trained, or its crops will not look like the ones it "
            "learnt from")


def with_trained_crop(config: Config, model_path: str | Path) -> Config:
    """``config`` with the crop settings ``model_path`` was trained with (those it names), each change logged.

    For tools that score a model the way it was trained (benchmarks), where a warning would only
    be read after a wasted run.
    """
    changed = crop_differences(model_path, config.locator)
    for key, value in changed.items():
        log.info("%s: crops cut with locator.%s = %r, as it was trained (the config has %r)",
                 model_path, key, value, getattr(config.locator, key))
    return override(config, **{f"locator.{key}": value for key, value in changed.items()}) if changed else config
