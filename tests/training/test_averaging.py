"""hv average: several runs as one model, scored and exported on the images none of them saw."""

import dataclasses
import json
import logging

import keras
import numpy as np
import pytest

from hv.classifier import KerasClassifier, ModelLoadError
from hv.cli import main
from hv.model import build_model, member_models
from mobile.package import averaged_runs
from tests.test_cli import _write_config
from training.averaging import average_runs
from training.data import DataError, discover_sources
from training.heldout import model_split
from training.lab_tuning import learnt_other


def _run(folder, config, seed, held_out, trained=None):
    """A run folder as hv train writes it: model.keras, config.json (``trained``: its cells per output) and the
    images it held out."""
    folder.mkdir(parents=True)
    keras.utils.set_random_seed(seed)
    build_model(config.model).save(folder / "model.keras")
    saved = dataclasses.asdict(config) | ({} if trained is None else {"trained_cells": trained})
    (folder / "config.json").write_text(json.dumps(saved) + "\n")
    (folder / "validation.txt").write_text("".join(f"{p}\t{y}\n" for p, y in held_out))
    return folder / "model.keras"


def test_the_average_holds_out_only_what_every_run_held_out(tmp_path, config):
    data, _ = discover_sources(config.data.train_dirs)
    pairs = list(zip(data.paths, data.labels))
    first = _run(tmp_path / "a", config, 0, pairs[:6])
    second = _run(tmp_path / "b", config, 1, pairs[3:9])
    description = average_runs([first, second], tmp_path / "average", config)
    out = tmp_path / "average"
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "members.json", "model.keras", "validation.txt"]
    assert description["held_out_by_all"] == 3 and len(description["members"]) == 2
    assert json.loads((out / "members.json").read_text()) == description
    split = model_split(out / "model.keras", config)
    assert split.held_out.paths == tuple(p for p, _ in pairs[3:6])  # neither run trained on these
    assert len(split.trained_on) == len(data) - 3
    model = KerasClassifier(out / "model.keras")
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    expected = np.mean([KerasClassifier(p).predict(crops) for p in (first, second)], axis=0)
    assert len(member_models(model.model)) == 2 and np.allclose(model.predict(crops), expected, atol=1e-5)
    # The app package names the runs it averages (model.json's averaged_runs).
    assert averaged_runs(out / "model.keras") == [{"name": "a", "sha256": description["members"][0]["sha256"]},
                                                  {"name": "b", "sha256": description["members"][1]["sha256"]}]
    assert averaged_runs(first) is None and averaged_runs(None) is None


def test_runs_that_see_cells_differently_are_not_averaged(tmp_path, config):
    first = _run(tmp_path / "a", config, 0, [])
    other = dataclasses.replace(config, locator=dataclasses.replace(config.locator, crop_context=2.0))
    second = _run(tmp_path / "b", other, 1, [])
    with pytest.raises(DataError, match="differ in locator"):
        average_runs([first, second], tmp_path / "average", config)
    assert not (tmp_path / "average").exists() and not (tmp_path / "average.partial").exists()


def test_bad_averages_are_refused_before_anything_is_written(tmp_path, config):
    first = _run(tmp_path / "a", config, 0, [])
    with pytest.raises(DataError, match="two or more"):
        average_runs([first], tmp_path / "average", config)
    with pytest.raises(DataError, match="named twice"):
        average_runs([first, first], tmp_path / "average", config)
    with pytest.raises(ModelLoadError, match="missing.keras does not exist"):
        average_runs([first, tmp_path / "missing.keras"], tmp_path / "average", config)
    loose = tmp_path / "loose.keras"
    build_model(config.model).save(loose)
    with pytest.raises(DataError, match="no config.json beside it"):
        average_runs([first, loose], tmp_path / "average", config)
    second = _run(tmp_path / "b", config, 1, [])
    (tmp_path / "taken").mkdir()
    with pytest.raises(DataError, match="exists"):
        average_runs([first, second], tmp_path / "taken", config)
    (first.parent / "holdout.txt").write_text("x.png\t0\n")
    with pytest.raises(DataError, match="different test images"):
        average_runs([first, second], tmp_path / "average", config)


def test_runs_trained_with_one_split_seed_average_on_their_whole_validation(tmp_path, config, capsys):
    """The user's path: two runs, one --split-seed, hv average, hv evaluate --held-out."""
    config_path = _write_config(tmp_path, config, val_fraction=0.34)
    runs = tmp_path / "runs"
    for seed in (1, 2):
        assert main(["--config", config_path, "train", "--out", str(runs), "--name", f"seed{seed}",
                     "--seed", str(seed), "--split-seed", "5"]) == 0
    held = [(runs / f"seed{seed}" / "validation.txt").read_text() for seed in (1, 2)]
    saved = json.loads((runs / "seed2" / "config.json").read_text())
    assert held[0] == held[1] and held[0] and saved["data"]["split_seed"] == 5 and saved["train"]["seed"] == 2
    capsys.readouterr()
    assert main(["--config", config_path, "average", str(runs / "seed1" / "model.keras"),
                 str(runs / "seed2" / "model.keras"), "--out", str(tmp_path / "average")]) == 0
    assert "the mean of 2 runs' class probabilities (model.keras); 4 images held out by every run" in \
        capsys.readouterr().out
    assert main(["--config", config_path, "evaluate", "--model", str(tmp_path / "average" / "model.keras"),
                 "--held-out", "--out", str(tmp_path / "scored")]) == 0
    assert json.loads((tmp_path / "scored" / "metrics.json").read_text())["n_images"] == 4

    assert main(["--config", config_path, "average", str(runs / "seed1" / "model.keras"),
                 "--out", str(tmp_path / "again")]) != 0
    assert "hv average: error: hv average needs two or more runs" in capsys.readouterr().err


def test_runs_that_held_out_nothing_are_averaged_for_export_without_a_split_warning(tmp_path, config, capsys,
                                                                                     caplog):
    """A final fit (data.val_fraction 0) holds out nothing by design; runs with their own splits share nothing."""
    first, second = _run(tmp_path / "a", config, 0, []), _run(tmp_path / "b", config, 1, [])
    with caplog.at_level(logging.INFO):
        assert main(["--config", _write_config(tmp_path, config), "average", str(first), str(second),
                     "--out", str(tmp_path / "final")]) == 0
    assert "held out nothing" in caplog.text and "--split-seed" not in caplog.text
    out = capsys.readouterr().out
    assert "0 images held out by every run" in out and "next: hv export --model" in out and "--held-out," not in out

    data, _ = discover_sources(config.data.train_dirs)
    pairs = list(zip(data.paths, data.labels))
    caplog.clear()
    apart = [_run(tmp_path / "c", config, 0, pairs[:3]), _run(tmp_path / "d", config, 1, pairs[3:6])]
    with caplog.at_level(logging.INFO):
        assert average_runs(apart, tmp_path / "apart", config)["held_out_by_all"] == 0
    assert "train runs to average with one --split-seed" in caplog.text


def test_the_average_trained_on_the_cells_of_its_runs_together(tmp_path, config):
    """What hv adapt --labelled reads to know whether the average learnt "other": any run that did."""
    first = _run(tmp_path / "a", config, 0, [], {"eosinophil": 3, "neutrophil": 2, "other": 0})
    second = _run(tmp_path / "b", config, 1, [], {"eosinophil": 1, "neutrophil": 0, "other": 4})
    average_runs([first, second], tmp_path / "average", config)
    saved = json.loads((tmp_path / "average" / "config.json").read_text())
    assert saved["trained_cells"] == {"eosinophil": 4, "neutrophil": 2, "other": 4}
    assert learnt_other(tmp_path / "average" / "model.keras") and not learnt_other(first)
