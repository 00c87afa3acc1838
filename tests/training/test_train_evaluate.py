import csv
import json
from pathlib import Path

import numpy as np
import pytest

from hv.classifier import load_classifier
from hv.labels import OUTPUT_NAMES
from hv.model import build_model, unfreeze_top_layers
from tests.conftest import replace
from training.evaluate import accuracy_by_view, evaluate, symmetries
from training.frozen_features import split_model
from training.train import train


def test_trainer_shares_weights_with_the_full_model(config):
    model = build_model(config.model)
    unfreeze_top_layers(model, 20)
    prefix, trainer = split_model(model, 20)
    images = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    split_out = np.asarray(trainer.predict_on_batch(prefix.predict_on_batch(images)))
    assert np.allclose(split_out, np.asarray(model.predict_on_batch(images)), atol=1e-5)
    assert {w.path for w in trainer.trainable_weights} <= {w.path for w in model.weights}
    assert any("block15" in w.path for w in trainer.trainable_weights)
    assert not any("block13" in w.path for w in trainer.trainable_weights)


def test_a_model_can_be_split_again_at_another_depth(config):
    model = build_model(config.model)
    split_model(model, 20)
    again, _ = split_model(model, 38)  # the first split's tail added nodes to the backbone's layers
    fresh, _ = split_model(build_model(config.model), 38)
    assert again.layers[-1].name == fresh.layers[-1].name == "block11_project_bn"


@pytest.mark.parametrize("cache", [True, False])
def test_train_then_evaluate_round_trip(tmp_path, config, cache):
    config = replace(config, train=replace(config.train, cache_frozen_features=cache))
    run = train(config, tmp_path / "runs" / "r")
    for name in ("model.keras", "config.json", "history.csv", "curves.png", "data_report.json"):
        assert (run / name).is_file(), name
    assert not (tmp_path / "runs" / "r.partial").exists()
    assert (run / "validation.txt").read_text() == ""  # data.val_fraction = 0
    with (run / "history.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {"loss", "accuracy"} <= set(rows[0])  # one epoch per phase
    assert json.loads((run / "config.json").read_text())["train"]["cache_frozen_features"] is cache

    metrics = evaluate(load_classifier(run / "model.keras"), config.data.test_dirs[0], config, tmp_path / "eval")
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["n_images"] == 12 == metrics["n_images"]
    assert 0 <= saved["accuracy"] <= 1 and 0 <= saved["macro_f1"] <= 1
    assert set(saved["per_class"]) == {"eosinophil", "lymphocyte", "monocyte", "neutrophil"}
    assert set(saved["per_class"]["monocyte"]) == {"precision", "recall", "f1", "support", "flagged_share"}
    assert (tmp_path / "eval" / "confusion_matrix.png").stat().st_size > 1000
    assert sum(v["n"] for v in saved["by_view"].values()) == 12  # every cell is seen whole, cut or not at all
    with (tmp_path / "eval" / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {row["view"] for row in rows} == set(saved["by_view"])
    for row in rows:  # the top probability is the answer and its confidence
        probs = {name: float(row[f"p_{name}"]) for name in OUTPUT_NAMES}
        assert probs[row["predicted"]] == max(probs.values()) == float(row["confidence"])


def test_accuracy_is_reported_apart_for_whole_and_cut_cells():
    true = np.array([0, 1, 2, 3, 0, 4])  # the last is an "other" cell: not one of the four
    pred = np.array([0, 1, 3, 3, 2, 4])
    views = ["whole", "whole", "cut", "cut", "not_located", "whole"]
    assert accuracy_by_view(true, pred, views) == {"whole": {"n": 2, "accuracy": 1.0}, "cut": {"n": 2, "accuracy": 0.5},
                                                   "not_located": {"n": 1, "accuracy": 0.0}}


def test_single_folder_holds_out_a_test_split_and_evaluates_it(tmp_path, config, caplog):
    config = replace(config, data=replace(config.data, test_dirs=(), test_fraction=0.34, val_fraction=0.5))
    run = train(config, tmp_path / "runs" / "single")
    # What it trained on, after both splits, is recorded; it had no "other" cell, and the log says what that means.
    assert json.loads((run / "config.json").read_text())["trained_cells"] == {
        "eosinophil": 1, "lymphocyte": 1, "monocyte": 1, "neutrophil": 1, "other": 0}
    assert any('never flag one "other"' in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    held_out = (run / "holdout.txt").read_text().splitlines()
    assert len(held_out) == 4  # one of the three fields of each class
    assert {line.split("\t")[1] for line in held_out} == {"0", "1", "2", "3"}
    validation = (run / "validation.txt").read_text().splitlines()
    assert len(validation) == 4 and not set(validation) & set(held_out)  # one of the two fields left, per class
    metrics = json.loads((run / "eval_holdout" / "metrics.json").read_text())
    assert metrics["n_images"] == 4


def test_symmetries_are_the_eight_distinct_turns_and_mirrors():
    batch = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    views = symmetries(batch)
    assert len({view.tobytes() for view in views}) == 8
    assert np.array_equal(views[0], batch)
    assert any(np.array_equal(view, batch[:, :, ::-1]) for view in views)
    assert any(np.array_equal(view, batch[:, ::-1]) for view in views)


def test_tta_prediction_does_not_depend_on_the_crop_orientation():
    class CornerClassifier:  # answers from one corner pixel: as orientation-bound as a model can be
        def predict(self, batch):
            corner = batch[:, 0, 0, 0].astype(np.float64)
            return np.stack([corner, 1 - corner], axis=1)

    batch = np.zeros((1, 4, 4, 1), np.uint8)
    batch[0, 0, 0, 0] = 1
    averaged = [np.mean([CornerClassifier().predict(v) for v in symmetries(view)], axis=0)
                for view in symmetries(batch)]
    assert all(np.allclose(a, averaged[0]) for a in averaged)
    assert np.allclose(averaged[0], [[0.25, 0.75]])  # 2 of the 8 views put the marked pixel in the corner


def test_copies_of_a_field_give_an_interval_by_original(tmp_path, tiny_model_path, config):
    import shutil

    # Each of the 3 fields per class copied 4 times (_<field>_<copy>): 48 images, 12 originals.
    copies = tmp_path / "copies"
    data = config.data.train_dirs[0]
    for image in sorted(Path(data).rglob("*.png")):
        field = image.stem.split("_")[1]
        (copies / image.parent.name).mkdir(parents=True, exist_ok=True)
        for copy in range(4):
            shutil.copy(image, copies / image.parent.name / f"_{field}_{copy + 100}.png")
    classifier = load_classifier(tiny_model_path)
    metrics = evaluate(classifier, str(copies), config, tmp_path / "eval_copies")
    assert metrics["n_images"] == 48 and metrics["accuracy_ci95_method"] == "bootstrap over 12 original fields"
    single = evaluate(classifier, data, config, tmp_path / "eval_single")
    assert single["accuracy_ci95_method"] == "Wilson, one image per cell"
    both = evaluate(classifier, [str(copies), data], config, tmp_path / "eval_both")
    assert both["accuracy_ci95_method"] == "bootstrap over 24 original fields"  # each source's fields apart
