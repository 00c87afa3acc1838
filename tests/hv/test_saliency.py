"""Grad-CAM heat maps, and which Keras model may explain an app package."""

import json

import numpy as np
import pytest

from hv.saliency import GradCam, find_source_model, overlay_heat_map
from tests.conftest import draw_field


def test_heat_map_has_the_crop_size_and_unit_range(tiny_model_path):
    cam = GradCam(tiny_model_path)
    crop = draw_field(np.random.default_rng(0), label=2, width=48, height=48)
    heat, probs = cam.heat_map(crop, class_id=2)
    assert heat.shape == (32, 32) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0 and probs.shape == (5,)
    picture = overlay_heat_map(crop, heat)
    assert picture.shape == crop.shape and picture.dtype == np.uint8


def test_the_heat_map_comes_from_the_model_itself(tiny_model_path):
    """Backbone then head, as GradCam runs them, give the saved model's own answer."""
    import keras

    model = keras.saving.load_model(tiny_model_path, compile=False)
    crop = draw_field(np.random.default_rng(3), label=1, width=32, height=32)
    _, probs = GradCam(tiny_model_path).heat_map(crop, class_id=1)
    np.testing.assert_allclose(probs, model.predict(crop[None].astype(np.float32), verbose=0)[0], atol=1e-5)


def test_a_package_is_explained_only_by_the_keras_model_it_came_from(tmp_path, tiny_model_path):
    from hv.classifier import file_sha256

    assert find_source_model(tiny_model_path, [])[0] == tiny_model_path  # a Keras model explains itself
    package = tmp_path / "package"
    package.mkdir()
    (package / "model.tflite").write_bytes(b"not read here")
    (package / "model.json").write_text(json.dumps({"source_model": None}))
    found, why = find_source_model(package / "model.tflite", [tiny_model_path])
    assert found is None and "does not name the Keras model" in why
    other = tmp_path / "other.keras"
    other.write_bytes(b"another model")
    source = {"name": "tiny.keras", "sha256": file_sha256(tiny_model_path)}
    (package / "model.json").write_text(json.dumps({"source_model": source}))
    assert find_source_model(package / "model.tflite", [other])[0] is None  # same role, other bytes: refused
    assert find_source_model(package / "model.tflite", [other, tiny_model_path])[0] == tiny_model_path


def test_the_bundled_package_names_the_repository_model():
    from hv.bundled import CHECKOUT_KERAS_MODEL, DEFAULT_MODEL

    if not CHECKOUT_KERAS_MODEL.is_file():
        pytest.skip("an installed hv without the checkout's models/ folder")
    assert find_source_model(DEFAULT_MODEL, [CHECKOUT_KERAS_MODEL])[0] == CHECKOUT_KERAS_MODEL


def test_heat_map_refuses_a_model_that_is_not_ours(tmp_path):
    import keras

    from hv.classifier import ModelLoadError

    inputs = keras.Input((8, 8, 3))
    path = tmp_path / "plain.keras"
    keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs))).save(path)
    with pytest.raises(ModelLoadError, match="not a HematoVision Keras model"):
        GradCam(path)


def test_an_average_of_runs_is_explained_by_the_mean_of_its_runs_maps(tmp_path, two_runs):
    import keras

    from hv.model import average_models

    crop = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    singles = [GradCam(path).heat_map(crop, class_id=2) for path in two_runs]
    assert all(heat.max() > 0 for heat, _ in singles) and not np.allclose(singles[0][0], singles[1][0])
    average_models([keras.saving.load_model(p, compile=False) for p in two_runs]).save(tmp_path / "average.keras")
    heat, probs = GradCam(tmp_path / "average.keras").heat_map(crop, class_id=2)
    assert heat.shape == (64, 64) and 0 <= heat.min() and heat.max() <= 1
    assert np.allclose(heat, (singles[0][0] + singles[1][0]) / 2, atol=1e-5)
    assert np.allclose(probs, (singles[0][1] + singles[1][1]) / 2, atol=1e-5)
