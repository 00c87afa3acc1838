"""Self-training on a lab's cells: the head retrained on the model's own surest calls."""

import json

import numpy as np
import pytest

from hv import cli
from hv.classifier import KerasClassifier
from hv.labels import CLASS_NAMES, OTHER_ID
from tests.training.test_lab_tuning import _called, _cells, _corrections_folder, _smear_fields
from training.self_training import surest_cells, tune_on_own_calls


def test_the_surest_cells_of_each_called_class_are_taken_never_other():
    probabilities = np.array([
        [0.9, 0.1, 0.0, 0.0, 0.0],  # 0: eosinophil, sure
        [0.6, 0.4, 0.0, 0.0, 0.0],  # 1: eosinophil, less sure
        [0.7, 0.3, 0.0, 0.0, 0.0],  # 2: eosinophil
        [0.0, 0.8, 0.2, 0.0, 0.0],  # 3: lymphocyte
        [0.0, 0.0, 0.1, 0.0, 0.9],  # 4: "other", surest of all: never taken
        [0.0, 0.0, 0.0, 0.55, 0.45],  # 5: neutrophil
    ])
    assert surest_cells(probabilities, 2).tolist() == [0, 2, 3, 5]  # no monocyte called: none taken
    assert sorted(surest_cells(probabilities, 10).tolist()) == [0, 1, 2, 3, 5]


def test_the_head_learns_its_surest_calls_and_only_the_head_changes(learned_model):
    path, config, test_folder = learned_model
    model = KerasClassifier(path).model
    crops, _ = _cells(test_folder, config)
    backbone = [np.array(w) for w in model.get_layer("backbone").weights]
    pred = model.get_layer("pred").get_weights()[0].copy()
    report = tune_on_own_calls(model, crops, per_class=3, learnt_other=False)
    assert report.cells == len(crops) and sum(report.called.values()) <= len(crops)
    assert all(n <= 3 for n in report.taken.values()) and sum(report.taken.values()) == report.tuning["cells"]
    assert report.tuning["agreement_after"] == 1.0 and report.tuning["other_shifts"] == []
    assert not np.allclose(model.get_layer("pred").get_weights()[0], pred)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(backbone, model.get_layer("backbone").weights))


def test_a_model_that_calls_every_cell_one_class_is_refused(learned_model):
    path, config, test_folder = learned_model
    model = KerasClassifier(path).model
    pred = model.get_layer("pred")
    kernel, bias = pred.get_weights()
    bias[0] += 100.0  # every cell eosinophil
    pred.set_weights([kernel, bias])
    crops, _ = _cells(test_folder, config)
    assert set(_called(model, crops)) == {0}
    with pytest.raises(ValueError, match="too few of the .* cells one of the four classes"):
        tune_on_own_calls(model, crops)


def test_adapt_command_self_trains_and_says_so(tmp_path, learned_model, capsys):
    path, _, test_folder = learned_model
    config = tmp_path / "config.toml"
    config.write_text("[model]\nimage_size = 64\n")
    out = tmp_path / "own.keras"
    common = ["--config", str(config), "adapt", str(test_folder), "--model", str(path)]
    assert cli.main([*common, "--out", str(out), "--self-train"]) == 0
    own = json.loads(out.with_suffix(".adapt.json").read_text())["self_trained"]
    assert set(own["taken"]) == set(CLASS_NAMES) and own["tuning"]["model_learnt_other"] is False
    printed = capsys.readouterr().out
    assert "then its head retrained on its own surest calls" in printed and "no label used" in printed
    corrections = _corrections_folder(tmp_path / "labelled", [0, 1, OTHER_ID], 4, np.random.default_rng(1))
    assert cli.main([*common, "--out", str(tmp_path / "both.keras"), "--self-train", "--labelled",
                     str(corrections)]) == 1
    err = capsys.readouterr().err.strip()
    assert "give --labelled or --self-train, not both" in err and "\n" not in err
    assert not (tmp_path / "both.keras").exists()


def test_adapt_command_says_in_one_line_when_the_model_calls_too_few_classes(tmp_path, tiny_model_path, capsys):
    fields = _smear_fields(tmp_path / "my_smears", np.random.default_rng(4))
    config = tmp_path / "config.toml"
    config.write_text('[model]\nweights = "none"\nimage_size = 32\n')
    out = tmp_path / "own.keras"
    assert cli.main(["--config", str(config), "adapt", str(fields), "--model", str(tiny_model_path), "--out",
                     str(out), "--self-train"]) == 1  # random weights give every cell one answer
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv adapt: error:") and str(fields) in err and "\n" not in err
    assert "one of the four classes" in err and "adapt without --self-train" in err
    assert not out.exists()
