import json

import cv2
import keras
import numpy as np
import pytest

from hv import cli
from hv.classifier import KerasClassifier, ModelLoadError
from hv.labels import CLASS_NAMES, OTHER_ID, OUTPUT_NAMES
from hv.preprocess import field_to_model_input, read_image_rgb
from tests.conftest import draw_field
from training.data import discover
from training.lab_tuning import HEAD_LAYERS, class_weights, dihedral_views, learnt_other, tune_on_labelled


def _cells(folder, config):
    split, _ = discover(folder)
    crops = np.stack([field_to_model_input(read_image_rgb(str(p)), config)[0] for p in split.paths])
    return crops, np.array(split.labels)


def _called(model, crops):
    return np.asarray(model(crops.astype(np.float32), training=False)).argmax(1)


def test_the_head_learns_what_this_lab_calls_its_cells(learned_model):
    """Cells whose labels disagree with what the model learnt (two classes swapped) are called as labelled after."""
    path, config, test_folder = learned_model
    model = KerasClassifier(path).model
    crops, labels = _cells(test_folder, config)
    swapped = labels.copy()
    swapped[labels == 0], swapped[labels == 1] = 1, 0
    before = _called(model, crops)
    assert np.mean(before == swapped) < 0.7  # the swap is news to the model, so the check below can fail
    report = tune_on_labelled(model, crops, swapped, strength=1e-4, epochs=40)
    after = _called(model, crops)
    moved = np.isin(labels, [0, 1])
    assert np.mean(after[moved] == swapped[moved]) > 0.8
    assert report.agreement_after > report.agreement_before
    assert report.per_class == {name: int((labels == k).sum()) for k, name in enumerate(CLASS_NAMES)}


def test_only_the_head_changes(learned_model):
    path, config, test_folder = learned_model
    model = KerasClassifier(path).model
    crops, labels = _cells(test_folder, config)
    frozen = {w.path: np.array(w) for w in model.weights if w.path.split("/")[0] not in HEAD_LAYERS}
    head = {w.path: np.array(w) for w in model.weights if w.path.split("/")[0] in HEAD_LAYERS}
    tune_on_labelled(model, crops, (labels + 1) % len(CLASS_NAMES), epochs=2, views=1)
    after = {w.path: np.array(w) for w in model.weights}
    assert frozen and all(np.array_equal(after[k], v) for k, v in frozen.items())  # BatchNorm statistics too
    assert any(not np.allclose(after[k], v) for k, v in head.items())


def test_a_strong_pull_keeps_the_trained_head(learned_model):
    """The pull towards the trained weights is what keeps a few cells from rewriting the head."""
    path, config, test_folder = learned_model
    crops, labels = _cells(test_folder, config)
    wrong = (labels + 1) % len(CLASS_NAMES)
    kept, followed = {}, {}
    for strength in (0.0, 1000.0):
        model = KerasClassifier(path).model
        before = _called(model, crops)
        tune_on_labelled(model, crops, wrong, strength=strength, epochs=40, views=2)
        after = _called(model, crops)
        kept[strength], followed[strength] = np.mean(after == before), np.mean(after == wrong)
    assert followed[0.0] > 0.8  # unpulled, the head learns even wrong labels ...
    assert kept[1000.0] > 0.9 and followed[1000.0] < 0.2  # ... pulled hard, it keeps its answers


def test_each_run_of_an_average_is_tuned(two_runs):
    from hv.model import average_models, member_models

    average = average_models([keras.saving.load_model(p, compile=False) for p in two_runs])
    before = [m.get_layer("pred").get_weights()[0].copy() for m in member_models(average)]
    crops = np.random.default_rng(0).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    tune_on_labelled(average, crops, [0, 1, 2, 3, 0, 1, 2, OTHER_ID], epochs=2, views=2, strength=0.0)
    assert all(not np.allclose(m.get_layer("pred").get_weights()[0], b) for m, b in zip(member_models(average), before))


def test_dihedral_views_are_the_eight_orientations_crop_by_crop():
    crops = np.random.default_rng(0).integers(0, 256, (2, 5, 5, 3), dtype=np.uint8)
    views = dihedral_views(crops)
    assert views.shape == (16, 5, 5, 3)
    assert len({v.tobytes() for v in views[:8]}) == 8  # an asymmetric crop: all eight differ
    np.testing.assert_array_equal(views[0], crops[0])
    np.testing.assert_array_equal(views[8], crops[1])
    np.testing.assert_array_equal(views[1], np.rot90(crops[0]))


def test_each_class_weighs_alike():
    weights = class_weights(np.array([3, 3, 3, 3, 3, 3, 0, 0]))
    assert weights[:6].sum() == pytest.approx(weights[6:].sum())
    assert weights.mean() == pytest.approx(1.0)


@pytest.mark.parametrize(("labels", "message"), [
    ([0] * 10, "of 1 classes"),
    ([0, 1, 0], "3 labelled cells"),
    ([0, 1, 2, 3, 0, 1, 2, 9, 0, 1], "output ids"),
])
def test_too_little_or_wrong_labelling_is_refused(tiny_model_path, labels, message):
    model = KerasClassifier(tiny_model_path).model
    crops = np.zeros((len(labels), 32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match=message):
        tune_on_labelled(model, crops, labels)


def test_a_model_without_our_head_is_named():
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax")(pooled), name="foreign")
    with pytest.raises(ModelLoadError, match="foreign: tuning on labelled cells needs a model from hv train"):
        tune_on_labelled(model, np.zeros((8, 32, 32, 3), np.uint8), [0, 1] * 4)


def _corrections_folder(root, classes, per_class, rng):
    """A Review page's corrections: crops in lowercase class folders, beside corrections.csv."""
    for label in classes:
        folder = root / OUTPUT_NAMES[label]
        folder.mkdir(parents=True)
        for i in range(per_class):
            crop = cv2.resize(draw_field(rng, min(label, 3)), (64, 64))
            cv2.imwrite(str(folder / f"s_{i}.png"), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    (root / "corrections.csv").write_text("file,label\n")
    return root


def _smear_fields(folder, rng, count: int = 40):
    """A folder of ``count`` synthetic fields of the four classes in turn: a lab's unlabelled smears."""
    folder.mkdir()
    for i in range(count):
        cv2.imwrite(str(folder / f"field{i}.png"), cv2.cvtColor(draw_field(rng, i % 4), cv2.COLOR_RGB2BGR))
    return folder


def test_adapt_command_retrains_the_head_on_a_corrections_folder(tmp_path, tiny_model_path, capsys):
    rng = np.random.default_rng(4)
    fields = _smear_fields(tmp_path / "my_smears", rng)
    corrections = _corrections_folder(tmp_path / "hv-corrections", [0, 3, OTHER_ID], 4, rng)
    (corrections / "neutrophil" / "broken.png").write_bytes(b"not a png")
    config = tmp_path / "config.toml"
    config.write_text('[model]\nweights = "none"\nimage_size = 32\n')
    common = ["--config", str(config), "adapt", str(fields), "--model", str(tiny_model_path)]
    plain, tuned = tmp_path / "plain.keras", tmp_path / "tuned.keras"
    assert cli.main([*common, "--out", str(plain)]) == 0
    assert cli.main([*common, "--out", str(tuned), "--labelled", str(corrections)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(tuned.with_suffix(".adapt.json").read_text())
    assert report["labelled_from"] == [str(corrections)]
    assert report["labelled"]["per_class"] == {"eosinophil": 4, "neutrophil": 4, "other": 4}  # broken.png skipped
    assert "then the head was retrained on 12 labelled cells (4 eosinophil, 4 neutrophil, 4 other)" in printed
    lab = report["labelled"]
    assert lab["lab_cells"] == report["cells"] and lab["other_shifts"] == []  # "other" labelled: no shift
    assert f'{lab["lab_cells_flagged_after"]:.0%} of the {report["cells"]} unlabelled cells flagged "other"' in printed
    assert json.loads(plain.with_suffix(".adapt.json").read_text())["labelled"] is None
    heads = [KerasClassifier(p).model.get_layer("pred").get_weights()[0] for p in (plain, tuned)]
    assert not np.allclose(*heads)  # the same adapting, then the head moved
    backbones = [KerasClassifier(p).model.get_layer("backbone").get_weights() for p in (plain, tuned)]
    assert all(np.array_equal(a, b) for a, b in zip(*backbones))


@pytest.mark.parametrize(("classes", "per_class", "message"), [
    ([0], 10, "10 labelled cells of 1 classes"),
    ([0, 1], 2, "4 labelled cells of 2 classes"),
])
def test_adapt_command_refuses_thin_labelling_in_one_line(tmp_path, tiny_model_path, tiny_dataset_dir, capsys,
                                                          classes, per_class, message):
    corrections = _corrections_folder(tmp_path / "labelled", classes, per_class, np.random.default_rng(0))
    out = tmp_path / "a.keras"
    assert cli.main(["adapt", str(tiny_dataset_dir), "--model", str(tiny_model_path), "--out", str(out),
                     "--labelled", str(corrections)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv adapt: error:") and message in err and str(corrections) in err and "\n" not in err
    assert not out.exists()


@pytest.mark.parametrize("train_dense", [True, False])
def test_a_class_the_labels_do_not_show_keeps_its_weights(learned_model, train_dense):
    """No "other" (or monocyte) cell among the labelled ones: its output column is left as trained."""
    path, config, test_folder = learned_model
    model = KerasClassifier(path).model
    crops, labels = _cells(test_folder, config)
    keep = labels != 2  # no monocyte either
    pred, dense = model.get_layer("pred"), model.get_layer("dense")
    kernel, bias = (w.copy() for w in pred.get_weights())
    dense_before = [w.copy() for w in dense.get_weights()]
    tune_on_labelled(model, crops[keep], labels[keep], epochs=5, views=2, strength=0.0, train_dense=train_dense)
    new_kernel, new_bias = pred.get_weights()
    for column in (2, OTHER_ID):
        np.testing.assert_array_equal(new_kernel[:, column], kernel[:, column])
    assert new_bias[OTHER_ID] == bias[OTHER_ID]  # the four's biases move together, against "other" (below)
    assert not np.allclose(new_kernel[:, [0, 1, 3]], kernel[:, [0, 1, 3]])  # the classes shown did learn
    assert all(np.array_equal(a, b) for a, b in zip(dense.get_weights(), dense_before)) != train_dense


def _flagged(model, crops):
    return _called(model, crops) == OTHER_ID


def _model_flagging(learned_model, share):
    """The learned model (which never learnt "other") with its "other" bias set to flag ``share`` of its test cells."""
    path, config, test_folder = learned_model
    crops, labels = _cells(test_folder, config)
    model = KerasClassifier(path).model
    pred = model.get_layer("pred")
    kernel, bias = pred.get_weights()
    logits = np.asarray(model.get_layer("dense")(_pooled(model, crops)), np.float64) @ kernel + bias
    margins = np.delete(logits, OTHER_ID, axis=1).max(axis=1) - logits[:, OTHER_ID]
    bias[OTHER_ID] += np.quantile(margins, share) if share else min(0.0, margins.min() - 0.5)
    pred.set_weights([kernel, bias])
    return model, crops, (labels + 1) % len(CLASS_NAMES)  # labels that disagree with what it learnt


def _other_margin(model, crops):
    """Per crop, log((1 - p_other) / p_other): how far the four classes stand above "other"."""
    p_other = np.asarray(model(crops.astype(np.float32), training=False), np.float64)[:, OTHER_ID]
    return np.log1p(-p_other) - np.log(p_other)


def test_without_other_labels_the_four_classes_stand_against_other_as_before(learned_model):
    """Labels of the four only would teach the head that nothing is "other"; the margin over the cells is restored.

    With ``dense`` kept, the "other" logit does not move, so the four classes' level put back is the margin.
    """
    model, crops, swapped = _model_flagging(learned_model, 0.0)
    before = _other_margin(model, crops)
    tune_on_labelled(model, crops, swapped, epochs=20, views=1, strength=0.0, train_dense=False, anchor_crops=crops)
    shift = _other_margin(model, crops) - before
    assert abs(np.median(shift)) < 1e-2
    assert np.ptp(shift) > 0.1  # the answers did move, cell by cell: only their median was put back


def test_the_report_says_how_many_of_the_labs_cells_are_flagged(learned_model):
    """Of the unlabelled cells, the share flagged "other" before and after, and the shift the step applied."""
    model, crops, swapped = _model_flagging(learned_model, 0.3)
    before = _flagged(model, crops).mean()
    report = tune_on_labelled(model, crops[::2], swapped[::2], epochs=20, views=1, anchor_crops=crops)
    assert report.lab_cells == len(crops) and len(report.other_shifts) == 1 and report.other_shifts[0] != 0
    assert report.lab_cells_flagged_before == pytest.approx(before, abs=1e-4)
    assert report.lab_cells_flagged_after == pytest.approx(_flagged(model, crops).mean(), abs=1e-4)


def _pooled(model, crops):
    probe = keras.Model(model.inputs[0], model.get_layer("avg_pool").output)
    return np.asarray(probe(crops.astype(np.float32), training=False), np.float64)




def test_hv_train_records_that_the_model_never_learnt_other(learned_model):
    """The run's config says how many cells of each output it trained on; "other" had none."""
    path, _, _ = learned_model
    saved = json.loads((path.parent / "config.json").read_text())
    assert saved["trained_cells"] == {**dict.fromkeys(CLASS_NAMES, 20), "other": 0}
    assert learnt_other(path) is False


@pytest.mark.parametrize("learnt", [True, None])
def test_a_model_that_never_learnt_other_is_not_shifted_against_it(learned_model, learnt):
    """The step is the only difference: the same tuning, then the four classes' biases raised by the shift or not.

    A model whose training held "other" cells, or one nothing is known of, gets the shift; one that never
    learnt "other" keeps the head as tuned, its "other" logit being meaningless.
    """
    runs = {}
    for told in (learnt, False):
        model, crops, swapped = _model_flagging(learned_model, 0.3)
        report = tune_on_labelled(model, crops[::2], swapped[::2], epochs=5, views=1, anchor_crops=crops,
                                  learnt_other=told)
        runs[told] = report, model.get_layer("pred").get_weights(), model.get_layer("dense").get_weights()
    (shifted, pred_shifted, dense_shifted), (kept, pred_kept, dense_kept) = runs[learnt], runs[False]
    assert kept.other_shifts == [] and kept.model_learnt_other is False
    assert len(shifted.other_shifts) == 1 and abs(shifted.other_shifts[0]) > 1e-3
    assert shifted.model_learnt_other is learnt
    assert all(np.allclose(a, b, atol=1e-5) for a, b in zip(dense_shifted, dense_kept))  # the same tuning
    np.testing.assert_allclose(pred_shifted[0], pred_kept[0], atol=1e-5)
    four = np.arange(len(OUTPUT_NAMES)) != OTHER_ID
    np.testing.assert_allclose(pred_shifted[1][four] - pred_kept[1][four], shifted.other_shifts[0], atol=1e-3)
    assert pred_shifted[1][OTHER_ID] == pytest.approx(pred_kept[1][OTHER_ID], abs=1e-6)


def test_adapt_command_leaves_a_model_that_never_learnt_other_unshifted(tmp_path, learned_model, capsys):
    """hv adapt reads from the run folder that the model trained on no "other" cell, and says so."""
    path, _, test_folder = learned_model
    corrections = _corrections_folder(tmp_path / "hv-corrections", [0, 1, 3], 4, np.random.default_rng(5))
    config = tmp_path / "config.toml"
    config.write_text("[model]\nimage_size = 64\n")
    out = tmp_path / "tuned.keras"
    assert cli.main(["--config", str(config), "adapt", str(test_folder), "--model", str(path), "--out", str(out),
                     "--labelled", str(corrections)]) == 0
    lab = json.loads(out.with_suffix(".adapt.json").read_text())["labelled"]
    assert lab["model_learnt_other"] is False and lab["other_shifts"] == []
    assert 'before); the model never learnt "other" (its training held no such cell), so' in capsys.readouterr().out
