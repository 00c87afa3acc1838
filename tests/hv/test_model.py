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


def test_an_average_of_runs_answers_the_mean_of_their_probabilities(tmp_path, two_runs):
    from hv.classifier import KerasClassifier
    from hv.model import average_models, member_models

    runs = [keras.saving.load_model(p, compile=False) for p in two_runs]
    batch = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3)).astype(np.float32)
    answers = [np.asarray(run.predict_on_batch(batch)) for run in runs]
    assert not np.allclose(answers[0], answers[1], atol=1e-3)  # two runs that differ
    average = average_models(runs)
    assert [m.name for m in member_models(average)] == ["member_0", "member_1"]
    assert member_models(runs[0]) == [runs[0]]
    average.save(tmp_path / "average.keras")
    loaded = KerasClassifier(tmp_path / "average.keras")  # one file, loaded like any run
    crops = batch.astype(np.uint8)
    expected = np.mean([np.asarray(run.predict_on_batch(crops.astype(np.float32))) for run in runs], axis=0)
    assert np.allclose(loaded.predict(crops), expected, atol=1e-5)
    assert len(member_models(loaded.model)) == 2


def test_an_average_refuses_one_run_an_average_or_runs_that_differ(two_runs):
    from hv.model import average_models

    runs = [keras.saving.load_model(p, compile=False) for p in two_runs]
    with pytest.raises(ValueError, match="at least two"):
        average_models(runs[:1])
    with pytest.raises(ValueError, match="different inputs"):
        average_models([runs[0], build_model(ModelConfig(weights="none", image_size=48))])
    average = average_models(runs)
    with pytest.raises(ValueError, match="itself an average"):
        average_models([average, build_model(ModelConfig(weights="none", image_size=64))])
