"""A model's crop settings travel with it, and a config that cuts other crops is named."""

import json
import logging

import pytest

from hv import cli
from hv.config import Config, LocatorConfig
from mobile.export import export
from tests.conftest import SAMPLES
from training.data import DataError
from training.trained_crop import crop_mismatches, trained_crop, with_trained_crop


def _run_folder(tmp_path, **locator):
    """A run folder as hv train leaves it: model.keras (not needed here) and config.json."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"seed": 0}, "data": {"val_fraction": 0.1},
                                                 "locator": locator}))
    return run / "model.keras"


def test_a_package_says_how_its_crops_were_cut(tmp_path):
    (tmp_path / "model.json").write_text(json.dumps({"crop": {"crop_context": 1.4, "edge_fill": "reflect",
                                                              "stain_correction": "always", "what": "window"}}))
    model = tmp_path / "model.tflite"
    assert trained_crop(model) == {"crop_context": 1.4, "edge_fill": "reflect", "stain_correction": "always"}
    assert crop_mismatches(model, LocatorConfig()) == ["locator.stain_correction = 'always' (the config has 'auto')"]
    assert crop_mismatches(model, LocatorConfig(stain_correction="always")) == []


def test_a_run_folder_is_checked_on_the_settings_it_names(tmp_path):
    # Trained before the stain correction existed: not checked on it; the scale is the user's to set.
    model = _run_folder(tmp_path, crop_context=2.0, edge_fill="reflect", cell_diameter_frac=0.3)
    assert crop_mismatches(model, LocatorConfig(stain_correction="off")) == [
        "locator.crop_context = 2.0 (the config has 1.4)"]
    assert crop_mismatches(model, LocatorConfig(crop_context=2.0, cell_diameter_frac="auto")) == []


def test_nothing_beside_the_model_or_a_broken_description_checks_nothing(tmp_path, caplog):
    assert trained_crop(tmp_path / "alone.keras") == {}
    (tmp_path / "model.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert trained_crop(tmp_path / "model.tflite") == {}
    assert "model.json: not an app package description" in caplog.text


def test_commands_warn_when_the_config_cuts_other_crops(tmp_path, tiny_model_path, caplog):
    tiny_model_path.with_suffix(".config.json").write_text(json.dumps(
        {"train": {"seed": 0}, "data": {"val_fraction": 0.0}, "locator": {"stain_correction": "always"}}))
    image = sorted(SAMPLES.glob("*.jpg"))[0]
    with caplog.at_level(logging.WARNING):
        assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(tmp_path / "out"),
                         str(image)]) == 0
    assert f"{tiny_model_path} was trained on crops cut with locator.stain_correction = 'always'" in caplog.text
    assert "hv --config FILE" in caplog.text
    assert (tmp_path / "out" / "cells.csv").is_file()  # a warning: the user may mean it


def test_export_refuses_a_package_that_would_describe_other_crops(tmp_path):
    model = _run_folder(tmp_path, stain_correction="always")
    with pytest.raises(DataError, match="locator.stain_correction = 'always' \\(the config has 'auto'\\)"):
        export(model, Config(), tmp_path / "export")
    assert not (tmp_path / "export").exists()  # refused before any work


def test_a_config_takes_the_crop_settings_the_model_was_trained_with(tmp_path):
    model = _run_folder(tmp_path, stain_correction="always", crop_context=1.4, cell_diameter_frac=0.3)
    config = Config()
    cut = with_trained_crop(config, model)
    assert (cut.locator.stain_correction, cut.locator.crop_context) == ("always", 1.4)
    assert cut.locator.cell_diameter_frac == config.locator.cell_diameter_frac  # the user's scale stays theirs
    assert config.locator.stain_correction == "auto"  # a copy: the config passed in is unchanged
    assert with_trained_crop(config, tmp_path / "alone.keras") is config
