import keras
import numpy as np
import pytest

from hv.classifier import KerasClassifier, ModelLoadError, load_classifier


def test_keras_classifier_round_trip(tiny_model_path):
    classifier = load_classifier(tiny_model_path)
    assert isinstance(classifier, KerasClassifier) and classifier.image_size == 32
    crops = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    probs = classifier.predict(crops)
    assert probs.shape == (40, 5) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert classifier.predict(crops[:0]).shape == (0, 5)


def test_a_four_class_model_gets_an_other_column_of_zeros(tmp_path):
    inputs = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(pooled))
    path = tmp_path / "four.keras"
    model.save(path)
    crops = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    probs = load_classifier(path).predict(crops)
    assert probs.shape == (3, 5)
    assert np.array_equal(probs[:, 4], np.zeros(3))
    assert np.allclose(probs[:, :4], model.predict_on_batch(crops.astype(np.float32)), atol=1e-6)


def test_bad_model_files_are_named(tmp_path):
    with pytest.raises(ModelLoadError, match="missing.keras does not exist"):
        load_classifier(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(ModelLoadError, match="corrupt.keras: not a loadable Keras model"):
        load_classifier(corrupt)
    with pytest.raises(ModelLoadError, match="unknown model type '.onnx'; expected a .keras or .tflite file"):
        load_classifier(tmp_path / "model.onnx")


def test_wrong_class_count_is_rejected(tmp_path):
    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(inputs)))
    path = tmp_path / "three.keras"
    model.save(path)
    with pytest.raises(ModelLoadError, match="with 4 or 5 outputs"):
        load_classifier(path)
