import json
import logging

import cv2
import numpy as np
import pytest

from hv.labels import CLASS_NAMES, OUTPUT_NAMES
from tests.conftest import draw_field, replace
from training.data import DataError, discover_sources, split_by_field
from training.heldout import TRAINED_CELLS_KEY, model_split, saved_config, trained_cells, trained_outputs


def _save_config(path, seed, val_fraction=0.34, **data):
    path.write_text(json.dumps({"train": {"seed": seed}, "data": {"val_fraction": val_fraction, **data}}))


def test_the_split_is_the_models_own_not_todays(tmp_path, config):
    config = replace(config, data=replace(config.data, val_fraction=0.34))
    run = tmp_path / "run"
    run.mkdir()
    _save_config(run / "config.json", seed=7)
    split = model_split(run / "model.keras", config)
    data, _ = discover_sources(config.data.train_dirs)
    assert split.held_out == split_by_field(data, 0.34, 7)[1] != split_by_field(data, 0.34, config.train.seed)[1]
    assert len(split.held_out) == 4 and not len(split.leaked)  # one field of three per class
    assert "seed 7, config.json" in split.described and "differ" not in split.described
    assert not set(split.held_out.paths) & set(split.trained_on.paths)

    # The bundle keeps its config as models/<name>.config.json; it wins over a folder's config.json.
    _save_config(run / "model.config.json", seed=3)
    assert model_split(run / "model.keras", config).seed == 3

    # Trained on other sources than today's config lists: said, not silently rebuilt.
    _save_config(run / "model.config.json", seed=3, train_dirs=["/data/other-lab/TRAIN"])
    assert "it trained on other-lab/TRAIN, today's sources differ" in model_split(run / "model.keras", config).described


def test_a_model_trained_on_a_fold_is_scored_on_that_fold(tmp_path, config):
    run = tmp_path / "run"
    run.mkdir()
    _save_config(run / "config.json", seed=1, val_fold="2/3")
    split = model_split(run / "model.keras", config)  # today's config: no fold
    data, _ = discover_sources(config.data.train_dirs)
    assert split.held_out == split_by_field(data, 0.34, 1, fold=(2, 3))[1]
    assert split.held_out != split_by_field(data, 0.34, 1, fold=(1, 3))[1]
    assert "(fold 2/3, seed 1, config.json)" in split.described


def test_a_model_without_a_saved_config_warns_and_uses_todays(tmp_path, config, caplog):
    config = replace(config, data=replace(config.data, val_fraction=0.34))
    with caplog.at_level(logging.WARNING):
        split = model_split(tmp_path / "elsewhere.keras", config)
    assert "no config saved beside it" in caplog.text and "today's config" in split.described
    assert split.seed == config.train.seed and len(split.held_out) == 4


def test_a_broken_saved_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"train": {}}')
    with pytest.raises(DataError, match=r"config.json: not a config saved by hv train"):
        saved_config(tmp_path / "model.keras")


def test_held_out_copies_of_trained_originals_are_left_out(tmp_path, config):
    # Two ids of one blood-cells original (BloodImage_00123 in the bundled grouping): a split by
    # ids holds out one of them while training on the other.
    root = tmp_path / "blood-cells" / "TRAIN"
    rng = np.random.default_rng(2)
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name.upper()
        folder.mkdir(parents=True)
        files = ("_0_1169.jpeg", "_10_6876.jpeg") if label == 0 else ("_1_1.png", "_2_2.png")
        for file in files:
            cv2.imwrite(str(folder / file), cv2.cvtColor(draw_field(rng, label), cv2.COLOR_RGB2BGR))
    config = replace(config, data=replace(config.data, train_dirs=(str(root),)))
    _save_config(tmp_path / "config.json", seed=0, val_fraction=0.5, original_groups="none")
    split = model_split(tmp_path / "model.keras", config)
    assert len(split.leaked) == 1 and split.leaked.labels == (0,)
    assert 0 not in split.held_out.labels and len(split.held_out) == 3
    assert "1 held-out copies of originals it trained on left out" in split.described

    # Trained with the grouping, both copies sit on one side: nothing leaks.
    _save_config(tmp_path / "config.json", seed=0, val_fraction=0.5, original_groups="bundled")
    split = model_split(tmp_path / "model.keras", config)
    assert not len(split.leaked) and split.held_out.labels.count(0) in (0, 2)


def test_a_run_folders_validation_list_is_read_as_written(tmp_path, config):
    run = tmp_path / "run"
    run.mkdir()
    _save_config(run / "config.json", seed=7)
    data, _ = discover_sources(config.data.train_dirs)
    listed = [data.paths[0], data.paths[5], str(tmp_path / "gone" / "EOSINOPHIL" / "_9_9.png")]
    (run / "validation.txt").write_text("".join(f"{p}\t0\n" for p in listed))
    split = model_split(run / "model.keras", config)
    assert split.held_out.paths == (data.paths[0], data.paths[5]) and len(split.trained_on) == len(data) - 2
    assert "validation.txt, seed 7" in split.described
    assert "1 of those listed are not in today's sources" in split.described

    # A run without test folders also held out its own test split (holdout.txt): not trained on either.
    (run / "holdout.txt").write_text(f"{data.paths[1]}\t0\n")
    split = model_split(run / "model.keras", config)
    assert data.paths[1] not in split.trained_on.paths and len(split.trained_on) == len(data) - 3


def test_a_run_without_test_folders_is_rebuilt_as_hv_train_split_it(tmp_path, config):
    from training.train import train

    config = replace(config, data=replace(config.data, test_dirs=(), test_fraction=0.34, val_fraction=0.5))
    run = train(config, tmp_path / "runs" / "r")
    written = {line.split("\t")[0] for line in (run / "validation.txt").read_text().splitlines()}
    (run / "validation.txt").unlink()  # as a run from before the list was written
    split = model_split(run / "model.keras", config)
    test = {line.split("\t")[0] for line in (run / "holdout.txt").read_text().splitlines()}
    assert set(split.held_out.paths) == written and len(written) == 4
    assert not test & (set(split.held_out.paths) | set(split.trained_on.paths))


def test_a_saved_split_seed_decides_the_split_not_the_training_seed(tmp_path, config):
    run = tmp_path / "run"
    run.mkdir()
    _save_config(run / "config.json", seed=7, split_seed=2)
    data, _ = discover_sources(config.data.train_dirs)
    assert model_split(run / "model.keras", config).held_out == split_by_field(data, 0.34, 2)[1]
    assert split_by_field(data, 0.34, 2)[1] != split_by_field(data, 0.34, 7)[1]
    _save_config(run / "config.json", seed=7, split_seed=-1)  # -1: train.seed, as before the option
    assert model_split(run / "model.keras", config).held_out == split_by_field(data, 0.34, 7)[1]


def _model_folder(folder, saved=None, **files):
    """A model file with, beside it, a saved config (``saved``) and any other json files (name: content)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.keras").write_bytes(b"a model")
    if saved is not None:
        (folder / "config.json").write_text(json.dumps({"train": {"seed": 0}, "data": {"val_fraction": 0.1}} | saved))
    for name, content in files.items():
        (folder / name.replace("_json", ".json")).write_text(json.dumps(content))
    return folder / "model.keras"


def test_what_a_models_training_held_is_read_from_the_files_beside_it(tmp_path):
    """The saved config's trained_cells; an older run's data_report.json; an average's runs; an adapted model's."""
    counts = {"eosinophil": 3, "lymphocyte": 2, "monocyte": 0, "neutrophil": 4, "other": 0}
    recorded = _model_folder(tmp_path / "recorded", {TRAINED_CELLS_KEY: counts})
    assert trained_outputs(recorded) == {"eosinophil", "lymphocyte", "neutrophil"}
    with_other = [{"counts": {"eosinophil": 5}}, {"counts": {"eosinophil": 0, "other": 7}}]
    older = _model_folder(tmp_path / "older", {}, data_report_json=with_other)
    assert trained_outputs(older) == {"eosinophil", "other"}
    average = _model_folder(tmp_path / "average", {}, members_json={"members": [{"model": str(recorded)},
                                                                                  {"model": str(older)}]})
    assert trained_outputs(average) == {"eosinophil", "lymphocyte", "neutrophil", "other"}
    (tmp_path / "elsewhere").mkdir()
    adapted = tmp_path / "elsewhere" / "adapted.keras"
    adapted.with_suffix(".adapt.json").write_text(json.dumps({"source_model": str(recorded)}))
    assert trained_outputs(adapted) == trained_outputs(recorded)
    assert trained_outputs(_model_folder(tmp_path / "bare")) is None  # a model from elsewhere: nothing says
    lost = _model_folder(tmp_path / "lost", {}, members_json={"members": [{"model": str(tmp_path / "gone.keras")}]})
    assert trained_outputs(lost) is None  # a run of the average was moved away: not known, not "none"


def test_trained_cells_name_every_output():
    assert trained_cells([0, 0, OUTPUT_NAMES.index("other"), 3]) == {
        "eosinophil": 2, "lymphocyte": 0, "monocyte": 0, "neutrophil": 1, "other": 1}
