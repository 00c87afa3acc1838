import keras
import numpy as np
import pytest

from hv.config import ModelConfig
from hv.model import BACKBONE_LAYER, WeightsError, build_model, unfreeze_top_layers


def test_head_and_output_contract():
    model = build_model(ModelConfig(weights="none", image_size=32, dense_units=16))
    names = [layer.name for layer in model.layers]
    assert names[-4:] == ["avg_pool", "top_dropout", "dense", "pred"]
    assert model.get_layer("dense").units == 16
    probs = np.asarray(model.predict_on_batch(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3))))
    assert probs.shape == (2, 5)  # the four classes and "other"
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert not model.get_layer(BACKBONE_LAYER).trainable  # phase 1: frozen base


def test_unfreeze_keeps_batchnorm_frozen():
    model = build_model(ModelConfig(weights="none", image_size=32))
    opened = unfreeze_top_layers(model, 20)
    backbone = model.get_layer(BACKBONE_LAYER)
    assert opened == ["block14_expand_conv", "block14_dwconv", "block14_project_conv", "block15_expand_conv",
                      "block15_dwconv", "block15_project_conv", "top_conv"]
    assert not any(layer.trainable for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert not backbone.get_layer("stem_conv").trainable


def test_offline_imagenet_b0_says_what_to_do(monkeypatch):
    def no_network(**kwargs):
        raise OSError("URL fetch failure: Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "EfficientNetB0", no_network)
    with pytest.raises(WeightsError, match="set model.weights to its path"):
        build_model(ModelConfig(backbone="efficientnet_b0", weights="imagenet", image_size=32))


def test_missing_weights_file_is_named(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    for backbone in ("efficientnet_b0", "efficientnet_lite0"):
        with pytest.raises(WeightsError, match="nope.weights.h5 does not exist"):
            build_model(ModelConfig(backbone=backbone, weights=str(missing), image_size=32))


def test_b0_builds_with_random_weights():
    model = build_model(ModelConfig(backbone="efficientnet_b0", weights="none", image_size=32))
    assert model.output_shape == (None, 5)
