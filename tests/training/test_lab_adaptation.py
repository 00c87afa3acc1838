import json

import cv2
import keras
import numpy as np
import pytest

from hv import cli
from hv.classifier import KerasClassifier, ModelLoadError
from tests.conftest import draw_field
from training.data import DataError
from training.lab_adaptation import adapt, normalisation_layer_names, reestimate_statistics, whole_cell_crops


def _top_bn(model: keras.Model):
    backbone = model.get_layer("backbone")
    return backbone, backbone.get_layer("top_bn")


def test_reestimated_statistics_normalise_the_new_labs_features(tiny_model_path):
    """After adapting, top_bn's inputs over the new lab's crops have its stored mean and variance."""
    model = KerasClassifier(tiny_model_path).model
    backbone, layer = _top_bn(model)
    crops = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    before = np.array(layer.moving_variance)
    reestimate_statistics(model, crops, ["top_bn"], batch_size=16)  # several batches: the sums must add up
    inputs = np.asarray(keras.Model(backbone.inputs[0], layer.input)(crops.astype(np.float32)), np.float64)
    inputs = inputs.reshape(-1, inputs.shape[-1])
    np.testing.assert_allclose(np.array(layer.moving_mean), inputs.mean(0), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(np.array(layer.moving_variance), inputs.var(0), rtol=1e-3, atol=1e-4)
    assert not np.allclose(before, np.array(layer.moving_variance))  # a fresh model's are 1: they did change


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
    assert report.images_found == report.images_read == 12 and report.cells >= 1 and report.layers == ["top_bn"]
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
    with pytest.raises(DataError, match="adapting needs at least 1000: add more fields"):
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
])
def test_adapt_command_bad_input_is_one_line(tmp_path, tiny_model_path, tiny_dataset_dir, capsys, case, message):
    folder, model, out = str(tiny_dataset_dir), str(tiny_model_path), str(tmp_path / "a.keras")
    if case == "missing folder":
        folder = str(tmp_path / "nowhere")
    elif case == "tflite model":
        model = str(tmp_path / "m.tflite")
    elif case == "overwrite":
        out = model
    else:
        out = str(tmp_path / "a.h5")
    assert cli.main(["adapt", folder, "--model", model, "--out", out]) == 1
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
    assert f"top_bn re-estimated on {report['cells']} cells from 40 of 40 images" in capsys.readouterr().out


def test_layers_are_adapted_from_the_input_side_whatever_the_order_given(tiny_model_path):
    crops = np.random.default_rng(2).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    variances = []
    for order in (["stem_bn", "top_bn"], ["top_bn", "stem_bn"]):
        model = KerasClassifier(tiny_model_path).model
        reestimate_statistics(model, crops, order)
        variances.append(np.array(_top_bn(model)[1].moving_variance))
    np.testing.assert_allclose(variances[0], variances[1], rtol=1e-5)
