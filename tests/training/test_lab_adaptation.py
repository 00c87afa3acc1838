import json

import cv2
import keras
import numpy as np
import pytest

from hv import cli
from hv.classifier import KerasClassifier, ModelLoadError
from tests.conftest import draw_field
from training.data import DataError, discover_sources
from training.lab_adaptation import (
    ADVISED_ABOVE,
    DEFAULT_LAYERS,
    NOT_NEEDED_UP_TO,
    ShiftCheck,
    adapt,
    class_balancing_weights,
    feature_shift,
    normalisation_layer_names,
    rebase_statistics,
    reestimate_statistics,
    training_lab_crops,
    whole_cell_crops,
)


def _top_bn(model: keras.Model):
    backbone = model.get_layer("backbone")
    return backbone, backbone.get_layer("top_bn")


def test_reestimated_statistics_normalise_the_new_labs_features(learned_model):
    """After adapting, top_bn's inputs over the new lab's crops have its stored mean and variance."""
    model = KerasClassifier(learned_model[0]).model  # ImageNet weights: a random model's top features are ~1e-13
    backbone, layer = _top_bn(model)
    crops = np.random.default_rng(0).integers(0, 256, (40, 64, 64, 3), dtype=np.uint8)
    before = np.array(layer.moving_variance)
    reestimate_statistics(model, crops, ["top_bn"], batch_size=16)  # several batches: the sums must add up
    inputs = np.asarray(keras.Model(backbone.inputs[0], layer.input)(crops.astype(np.float32)), np.float64)
    inputs = inputs.reshape(-1, inputs.shape[-1])
    np.testing.assert_allclose(np.array(layer.moving_mean), inputs.mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.array(layer.moving_variance), inputs.var(0), rtol=1e-3, atol=1e-4)
    assert inputs.std() > 1e-2  # features that carry a signal, so the comparisons above can fail
    assert not np.allclose(before, np.array(layer.moving_variance))  # ImageNet's: they did change


def test_rebasing_changes_nothing_the_model_computes(learned_model):
    model = KerasClassifier(learned_model[0]).model
    _, layer = _top_bn(model)
    before_mean = np.array(layer.moving_mean)
    crops = np.random.default_rng(5).integers(0, 256, (24, 64, 64, 3), dtype=np.uint8)
    before = np.asarray(model(crops.astype(np.float32), training=False))
    rebase_statistics(model, np.random.default_rng(6).integers(0, 256, (20, 64, 64, 3), dtype=np.uint8), ["top_bn"])
    assert not np.allclose(np.array(layer.moving_mean), before_mean, atol=1e-2)  # the statistics moved ...
    np.testing.assert_allclose(np.asarray(model(crops.astype(np.float32), training=False)), before,
                               rtol=1e-4, atol=1e-5)  # ... and the answers did not


def test_rebased_then_adapted_gives_the_new_lab_the_training_labs_moments(learned_model):
    """top_bn's outputs over the new lab's crops get the mean and variance they had over the training lab's."""
    model = KerasClassifier(learned_model[0]).model
    backbone, layer = _top_bn(model)
    rng = np.random.default_rng(8)
    training_lab = rng.integers(0, 256, (48, 64, 64, 3), dtype=np.uint8)
    new_lab = np.clip(training_lab * 0.6 + (90, 20, 60), 0, 255).astype(np.uint8)  # another stain and lamp
    outputs = keras.Model(backbone.inputs[0], layer.output)

    def moments(crops):
        values = np.asarray(outputs(crops.astype(np.float32), training=False), np.float64)
        values = values.reshape(-1, values.shape[-1])
        return values.mean(0), values.var(0)

    mean_training, var_training = moments(training_lab)
    assert not np.allclose(moments(new_lab)[0], mean_training, atol=1e-2)  # the shift to undo
    rebase_statistics(model, training_lab, ["top_bn"], batch_size=16)
    reestimate_statistics(model, new_lab, ["top_bn"], batch_size=16)
    mean_new, var_new = moments(new_lab)
    np.testing.assert_allclose(mean_new, mean_training, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(var_new, var_training, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("name", DEFAULT_LAYERS)
def test_training_stores_the_training_labs_statistics(learned_model, name):
    """hv train leaves the layers hv adapt re-estimates holding its training crops' statistics (ImageNet's before)."""
    model_path, config, _ = learned_model
    model = KerasClassifier(model_path).model
    backbone = model.get_layer("backbone")
    layer = backbone.get_layer(name)
    crops = training_lab_crops(discover_sources(config.data.train_dirs)[0], config, seed=config.train.seed)
    assert len(crops) == 80  # 20 fields of each class, all under the 1,000 cap
    inputs = np.asarray(keras.Model(backbone.inputs[0], layer.input)(crops.astype(np.float32)), np.float64)
    inputs = inputs.reshape(-1, inputs.shape[-1])
    np.testing.assert_allclose(np.array(layer.moving_mean), inputs.mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.array(layer.moving_variance), inputs.var(0), rtol=1e-3, atol=1e-4)


def test_feature_shift_is_zero_on_the_training_labs_cells_and_grows_with_a_stain_shift(learned_model):
    """The shift of the cells a model stored its statistics from is nil; another lab's is not, until adapted to."""
    model_path, config, _ = learned_model
    model = KerasClassifier(model_path).model
    training = training_lab_crops(discover_sources(config.data.train_dirs)[0], config, seed=config.train.seed)
    at_home = feature_shift(model, training)
    assert set(at_home) == set(DEFAULT_LAYERS) and max(at_home.values()) < 1e-3
    other_lab = np.clip(training * 0.6 + (90, 20, 60), 0, 255).astype(np.uint8)  # another stain and lamp
    away = feature_shift(model, other_lab, batch_size=16)
    # By hand for stem_bn: the mean over channels of |mean shift| / stored std.
    backbone = model.get_layer("backbone")
    layer = backbone.get_layer("stem_bn")
    inputs = np.asarray(keras.Model(backbone.inputs[0], layer.input)(other_lab.astype(np.float32)), np.float64)
    by_hand = np.mean(np.abs(inputs.reshape(-1, inputs.shape[-1]).mean(0) - np.array(layer.moving_mean))
                      / np.sqrt(np.array(layer.moving_variance) + layer.epsilon))
    assert away["stem_bn"] == pytest.approx(by_hand, rel=1e-3) and away["stem_bn"] > 0.1
    assert away["top_bn"] > 0.01
    reestimate_statistics(model, other_lab)
    assert max(feature_shift(model, other_lab).values()) < 1e-3  # adapted: the other lab is home now


def test_balanced_statistics_weigh_each_called_class_alike(learned_model):
    """Weights count like repeated crops, and the balancing gives every class the model calls the same total."""
    from training.lab_adaptation import _input_moments, _normalisation_layers

    model_path, config, _ = learned_model
    model = KerasClassifier(model_path).model
    # Cells of the four classes the model learnt, so that it calls them more than one class.
    crops = training_lab_crops(discover_sources(config.data.train_dirs)[0], config, seed=config.train.seed)[::4]
    container, layer = _normalisation_layers(model, ["top_bn"])[0]
    repeated = np.repeat(crops[:3], [1, 2, 3], axis=0)
    for got, expected in zip(_input_moments(model, container, layer, crops[:3], 2, np.array([1.0, 2.0, 3.0])),
                             _input_moments(model, container, layer, repeated, 4)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)  # float32 features, batched differently
    weights = class_balancing_weights(model, crops, batch_size=5)
    called = model.predict(crops.astype(np.float32), verbose=0).argmax(1)
    assert {round(float(weights[called == c].sum()), 9) for c in set(called)} == {1.0}
    # More cells of one class (a smear of mostly neutrophils) move the plain shift, not the balanced one.
    assert len(set(called)) > 1
    more_of_one = np.concatenate([crops, crops[called == called[0]], crops[called == called[0]]])
    balanced, balanced_more = (feature_shift(model, c, balanced=True) for c in (crops, more_of_one))
    plain, plain_more = feature_shift(model, crops), feature_shift(model, more_of_one)
    assert balanced_more["top_bn"] == pytest.approx(balanced["top_bn"], rel=1e-4)
    assert abs(plain_more["top_bn"] - plain["top_bn"]) > 100 * abs(balanced_more["top_bn"] - balanced["top_bn"])


def test_training_crops_are_drawn_evenly_from_each_source_and_class(tmp_path, config):
    rng = np.random.default_rng(12)
    for lab, counts in (("lab_a", (30, 2, 5, 9)), ("lab_b", (4, 4, 4, 4))):
        for name, count in zip(("eosinophil", "lymphocyte", "monocyte", "neutrophil"), counts):
            folder = tmp_path / lab / name
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f"{i}.png"), cv2.cvtColor(draw_field(rng, i % 4), cv2.COLOR_RGB2BGR))
    split = discover_sources([str(tmp_path / "lab_a"), str(tmp_path / "lab_b")])[0]
    # 8 groups, 3 each at most: lab_a's two lymphocytes give 2, every other group 3.
    assert len(training_lab_crops(split, config, max_cells=24)) == 23


def test_adapt_rebases_on_the_training_data_first(tmp_path, learned_model):
    """--training-data: the adapted model matches its top_bn moments to the training lab's, and says so."""
    model_path, config, test_folder = learned_model
    out = tmp_path / "adapted.keras"
    report = adapt(model_path, [test_folder], config, out, min_cells=1, training_data=config.data.train_dirs)
    assert report.rebased_on == list(config.data.train_dirs) and report.training_cells == 80
    assert json.loads(out.with_suffix(".adapt.json").read_text())["training_cells"] == 80
    plain = adapt(model_path, [test_folder], config, tmp_path / "plain.keras", min_cells=1)
    assert plain.rebased_on == [] and plain.training_cells == 0
    # The model was trained by hv train, which stored the same statistics: rebasing again changes nothing.
    crops = np.random.default_rng(9).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    rebased_twice = KerasClassifier(out).predict(crops)
    np.testing.assert_allclose(rebased_twice, KerasClassifier(tmp_path / "plain.keras").predict(crops),
                               rtol=1e-4, atol=1e-5)


def test_other_layers_keep_their_statistics(tiny_model_path):
    model = KerasClassifier(tiny_model_path).model
    names = normalisation_layer_names(model)
    assert names[0] == "stem_bn" and names[-1] == "top_bn" and len(names) == len(set(names)) > 2
    stem = model.get_layer("backbone").get_layer("stem_bn")
    _, top = _top_bn(model)
    before = np.array(stem.moving_variance)
    reestimate_statistics(model, np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
                          ["top_bn"])
    np.testing.assert_array_equal(np.array(stem.moving_variance), before)
    assert not np.allclose(np.array(top.moving_variance), 1.0)


def test_adapt_writes_a_model_and_its_report(tmp_path, tiny_model_path, tiny_dataset_dir, config):
    out = tmp_path / "adapted.keras"
    report = adapt(tiny_model_path, [tiny_dataset_dir], config, out, min_cells=1)
    assert report.images_found == report.images_read == 12 and report.cells >= 1
    assert report.layers == ["stem_bn", "top_bn"]
    written = json.loads(out.with_suffix(".adapt.json").read_text())
    assert written["cells"] == report.cells and len(written["source_sha256"]) == 64
    adapted = KerasClassifier(out)
    _, layer = _top_bn(adapted.model)
    assert not np.allclose(np.array(layer.moving_variance), 1.0)  # the fresh model's ones were replaced
    assert adapted.predict(np.zeros((2, 32, 32, 3), np.uint8)).shape[0] == 2


def test_a_cell_cut_by_the_border_is_not_used(config):
    field = np.full((120, 160, 3), 225, np.uint8)
    field[40:80, 60:100] = (110, 60, 170)  # a purple "nucleus" in the middle
    field[:30, :30] = (110, 60, 170)  # and one in the corner, cut by the border
    crops = whole_cell_crops(field, config)
    assert len(crops) == 1 and crops[0].shape == (32, 32, 3)


def test_too_few_cells_is_a_clear_error(tmp_path, tiny_model_path, tiny_dataset_dir, config):
    with pytest.raises(DataError, match="at least 1000 are needed: add more fields"):
        adapt(tiny_model_path, [tiny_dataset_dir], config, tmp_path / "a.keras", min_cells=1000)
    assert not list(tmp_path.glob("a*.keras"))


def test_max_cells_below_the_minimum_is_refused(tmp_path, tiny_model_path, tiny_dataset_dir, config):
    with pytest.raises(DataError, match="--max-cells 10 is below the 32 cells"):
        adapt(tiny_model_path, [tiny_dataset_dir], config, tmp_path / "a.keras", max_cells=10)


def test_unknown_layer_is_named(tmp_path, tiny_model_path, tiny_dataset_dir, config):
    with pytest.raises(ModelLoadError, match="no BatchNormalization layer named nope_bn"):
        adapt(tiny_model_path, [tiny_dataset_dir], config, tmp_path / "a.keras", layers=["nope_bn"], min_cells=1)


@pytest.mark.parametrize("case, message", [
    ("missing folder", "not a folder"),
    ("tflite model", "needs the .keras model"),
    ("overwrite", "would overwrite the model"),
    ("not keras out", "ending in .keras"),
    ("missing training data", "elsewhere"),
])
def test_adapt_command_bad_input_is_one_line(tmp_path, tiny_model_path, tiny_dataset_dir, capsys, case, message):
    folder, model, out = str(tiny_dataset_dir), str(tiny_model_path), str(tmp_path / "a.keras")
    extra = []
    if case == "missing training data":
        extra = ["--training-data", str(tmp_path / "elsewhere")]
    elif case == "missing folder":
        folder = str(tmp_path / "nowhere")
    elif case == "tflite model":
        model = str(tmp_path / "m.tflite")
    elif case == "overwrite":
        out = model
    else:
        out = str(tmp_path / "a.h5")
    assert cli.main(["adapt", folder, "--model", model, "--out", out, *extra]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv adapt: error:") and message in err and "\n" not in err


def test_adapt_command_on_a_folder_of_fields(tmp_path, tiny_model_path, capsys):
    rng = np.random.default_rng(3)
    folder = tmp_path / "my_smears" / "day1"  # any layout: images are found recursively
    folder.mkdir(parents=True)
    for i in range(40):
        cv2.imwrite(str(folder / f"field{i}.png"), cv2.cvtColor(draw_field(rng, i % 4), cv2.COLOR_RGB2BGR))
    (folder / "notes.txt").write_text("not an image")
    config = tmp_path / "config.toml"
    config.write_text('[model]\nweights = "none"\nimage_size = 32\n')
    out = tmp_path / "my_lab.keras"
    assert cli.main(["--config", str(config), "adapt", str(tmp_path / "my_smears"), "--model", str(tiny_model_path),
                     "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".adapt.json").read_text())
    assert report["images_found"] == report["images_read"] == 40 and report["cells"] >= 32
    printed = capsys.readouterr().out
    assert f"stem_bn, top_bn re-estimated on {report['cells']} cells from 40 of 40 images" in printed
    assert "for an older one, add --training-data" in printed  # no --training-data: the assumption is said
    assert f"hv export --model {out} --lab-data {tmp_path / 'my_smears'}" in printed  # the next step, for the app
    # What the cells looked like before: the shift of both layers, and the advice it gave, said and saved.
    assert set(report["feature_shift"]) == {"stem_bn", "top_bn"}
    assert report["advice"] == ShiftCheck(report["cells"], report["feature_shift"]).advice
    assert f"before adapting, {report['cells']} cells: their features lie {report['feature_shift']['top_bn']:.2f}" \
        in printed

    # --check says the same and writes nothing; neither --out nor --check is a one-line error.
    files_before = sorted(tmp_path.rglob("*"))
    assert cli.main(["--config", str(config), "adapt", str(tmp_path / "my_smears"), "--model", str(tiny_model_path),
                     "--check"]) == 0
    assert capsys.readouterr().out.strip() == ShiftCheck(report["cells"], report["feature_shift"]).describe()
    assert sorted(tmp_path.rglob("*")) == files_before
    assert cli.main(["--config", str(config), "adapt", str(tmp_path / "my_smears"), "--model", str(tiny_model_path),
                     "--check", "--training-data", str(tmp_path / "my_smears")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv adapt: error:") and "leave out --training-data" in err and "\n" not in err
    assert cli.main(["--config", str(config), "adapt", str(tmp_path / "my_smears"), "--model",
                     str(tiny_model_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv adapt: error:") and "--check" in err and "\n" not in err


@pytest.mark.parametrize(("top", "advice", "words"), [
    (0.10, "not needed", "like the cells the model learnt from, so adapting is not needed"),
    (NOT_NEEDED_UP_TO, "not needed", "like the cells the model learnt from, so adapting is not needed"),
    (0.24, "unclear", "adapting has gone both ways in validation"),
    (ADVISED_ABOVE, "unclear", "adapting has gone both ways in validation"),
    (0.40, "advised", "unlike the cells the model learnt from, so adapting is advised"),
])
def test_the_advice_follows_the_top_layers_shift(top, advice, words):
    check = ShiftCheck(50, {"stem_bn": 0.9, "top_bn": top})  # stem_bn (the colour) does not decide: BENCHMARKS.md
    assert check.advice == advice
    assert check.describe().startswith(f"50 cells: their features lie {top:.2f} standard deviations")
    assert words in check.describe()


def test_layers_are_adapted_from_the_input_side_whatever_the_order_given(learned_model):
    crops = np.random.default_rng(2).integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    variances = []
    for order in (["stem_bn", "top_bn"], ["top_bn", "stem_bn"]):
        model = KerasClassifier(learned_model[0]).model  # ImageNet weights: top features that carry a signal
        reestimate_statistics(model, crops, order)
        variances.append(np.array(_top_bn(model)[1].moving_variance))
    only_top = KerasClassifier(learned_model[0]).model
    reestimate_statistics(only_top, crops, ["top_bn"])
    # Adapting stem_bn first does change what top_bn sees, so equal results mean the same order was used.
    assert not np.allclose(np.array(_top_bn(only_top)[1].moving_variance), variances[0], rtol=1e-3)
    np.testing.assert_allclose(variances[0], variances[1], rtol=1e-4, atol=1e-6)


def test_adapting_an_average_re_estimates_every_run(two_runs):
    from hv.model import average_models, member_models

    average = average_models([keras.saving.load_model(p, compile=False) for p in two_runs])
    stems = [m.get_layer("backbone").get_layer("stem_bn") for m in member_models(average)]
    before = [np.array(s.moving_mean) for s in stems]
    reestimate_statistics(average, np.random.default_rng(2).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
                          ["stem_bn"])
    assert all(not np.allclose(np.array(s.moving_mean), b) for s, b in zip(stems, before))


@pytest.mark.parametrize("averaged", [False, True])
def test_the_checks_one_pass_gives_what_a_pass_per_layer_gives(learned_model, averaged):
    """The class-balanced feature shift from one backbone pass per run equals the pass-per-layer way's."""
    from hv.model import average_models

    path, config, _ = learned_model
    models = [keras.models.load_model(path, compile=False) for _ in range(1 + averaged)]
    model = average_models(models) if averaged else models[0]
    crops = training_lab_crops(discover_sources(config.data.train_dirs)[0], config, seed=1)[::4]
    crops = np.concatenate([crops, crops[:5]])  # some cells twice: the class weights matter
    called = model.predict(crops.astype(np.float32), verbose=0).argmax(1)
    assert len(set(called)) > 1 and len(set(np.bincount(called)[called])) > 1
    one_pass = feature_shift(model, crops, batch_size=5, balanced=True)
    per_layer = feature_shift(model, crops, batch_size=5, balanced=True, one_pass=False)
    assert set(one_pass) == set(per_layer) == {"stem_bn", "top_bn"}
    for name, value in per_layer.items():
        assert one_pass[name] == pytest.approx(value, rel=1e-5)


def test_the_shift_of_an_average_is_the_mean_of_its_runs(learned_model):
    """Each run of an average holds its own statistics; the check reads them all, not the last run's alone."""
    from hv.model import average_models, member_models

    path, config, _ = learned_model
    models = [keras.models.load_model(path, compile=False) for _ in range(2)]
    top = models[1].get_layer("backbone").get_layer("top_bn")
    top.moving_mean.assign(np.asarray(top.moving_mean) + np.sqrt(np.asarray(top.moving_variance)))  # 1 sd away
    average = average_models(models)
    crops = training_lab_crops(discover_sources(config.data.train_dirs)[0], config, seed=1)[::4]
    runs = [feature_shift(member, crops) for member in member_models(average)]
    assert runs[1]["top_bn"] > runs[0]["top_bn"] + 0.5
    shift = feature_shift(average, crops)
    for name in ("stem_bn", "top_bn"):
        assert shift[name] == pytest.approx((runs[0][name] + runs[1][name]) / 2, rel=1e-6)
    balanced = feature_shift(average, crops, balanced=True)
    assert runs[0]["top_bn"] < balanced["top_bn"] < runs[1]["top_bn"]
