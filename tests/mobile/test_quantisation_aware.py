import keras
import numpy as np
import pytest

from hv.classifier import LiteRTClassifier
from hv.preprocess import to_model_batch
from mobile.bias_correction import _rounded
from mobile.convert import convert_keras
from mobile.quantisation_aware import Int8Simulation, TuningError, _fake_quant_kernel, fine_tune_for_int8

KEEP_FLOAT = ("stem_conv",)


@pytest.fixture
def crops():
    return np.random.default_rng(0).integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)


def _small_model(path, wide_dense_range: bool = False):
    """A nested backbone + head with the converter's patterns (conv-BN-ReLU6, a residual Add).

    The random-weight Lite0 of ``tiny_model_path`` answers 0.25 everywhere (its activations
    vanish), so its int8 rounding cannot be seen; this one keeps unit-sized activations.
    """
    keras.utils.set_random_seed(0)
    layers = keras.layers
    image = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1, name="rescale")(image)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = layers.ReLU(6, name="stem_relu6")(layers.BatchNormalization(name="stem_bn")(x))
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block0_dwconv")(x)
    y = layers.ReLU(6, name="block0_relu6")(layers.BatchNormalization(name="block0_dw_bn")(y))
    y = layers.Conv2D(8, 1, use_bias=False, name="block0_project_conv")(y)
    y = layers.BatchNormalization(name="block0_project_bn")(y)
    x = layers.Add(name="block0_add")([x, y])
    backbone = keras.Model(image, x, name="backbone")
    inputs = keras.Input((32, 32, 3), name="image")
    x = layers.GlobalAveragePooling2D(name="pool")(backbone(inputs))
    x = layers.Dense(16, activation="relu", name="dense")(x)
    pred = layers.Dense(4, activation="softmax", kernel_initializer=keras.initializers.RandomNormal(stddev=3.0),
                        name="pred")
    model = keras.Model(inputs, pred(x))
    if wide_dense_range:
        # One unit far above the others widens the dense output's int8 range (steps of ~0.08), so
        # its rounding shows through the softmax's 1/256 output steps; pred ignores that unit.
        kernel, bias = model.get_layer("dense").get_weights()
        model.get_layer("dense").set_weights([kernel, np.r_[20.0, bias[1:]].astype(np.float32)])
        kernel, bias = model.get_layer("pred").get_weights()
        model.get_layer("pred").set_weights([np.r_[np.zeros((1, 4)), kernel[1:]].astype(np.float32), bias])
    model.save(path)
    return path


@pytest.fixture
def small_model_path(tmp_path):
    return _small_model(tmp_path / "small.keras")


def _mse(simulation, reference, crops):
    x = to_model_batch(crops)
    return float(np.mean((np.asarray(simulation.logits(x)) - np.asarray(reference.logits(x))) ** 2))


def test_simulated_weight_rounding_is_bias_corrections():
    rng = np.random.default_rng(0)
    for shape, depthwise in (((3, 3, 4, 5), False), ((3, 3, 6, 1), True), ((8, 4), False)):
        kernel = rng.normal(size=shape).astype(np.float32)
        expected = _rounded(kernel[None, None] if len(shape) == 2 else kernel, depthwise)  # Dense: a 1x1 conv
        got = np.asarray(_fake_quant_kernel(kernel, depthwise))
        assert np.allclose(got, expected.reshape(shape), atol=1e-6)


def test_unquantised_simulation_is_the_float_model(small_model_path, crops):
    model = keras.saving.load_model(small_model_path, compile=False)
    logits = np.asarray(Int8Simulation(model, quantise=False).logits(to_model_batch(crops)))
    assert np.allclose(keras.ops.softmax(logits), model.predict_on_batch(to_model_batch(crops)), atol=1e-5)


def test_simulation_is_closer_to_int8_tflite_than_the_float_model(tmp_path, crops):
    path = _small_model(tmp_path / "wide.keras", wide_dense_range=True)
    model = keras.saving.load_model(path, compile=False)
    tflite = LiteRTClassifier(convert_keras(path, tmp_path, ("int8_mixed",), crops, KEEP_FLOAT)
                              ["int8_mixed"]).predict(crops)[:, :4]  # a four-output model: drop the "other" column
    simulation = Int8Simulation(model, keep_float=KEEP_FLOAT)
    simulation.calibrate(crops)
    simulated = np.asarray(keras.ops.softmax(simulation.logits(to_model_batch(crops))))
    exact = model.predict_on_batch(to_model_batch(crops))
    assert np.abs(simulated - tflite).mean() < 0.5 * np.abs(exact - tflite).mean()


def test_fine_tuning_trains_only_quantised_layers_towards_the_float_logits(small_model_path, crops):
    reference = keras.saving.load_model(small_model_path, compile=False)
    model = keras.saving.load_model(small_model_path, compile=False)
    before = {w.path: np.array(w) for w in model.weights}
    teacher = Int8Simulation(reference, quantise=False)
    student = Int8Simulation(model, keep_float=("stem_conv",))
    student.calibrate(crops)
    error_before = _mse(student, teacher, crops)

    fine_tune_for_int8(model, reference, crops, crops, keep_float=("stem_conv",), steps=30, learning_rate=1e-4,
                       batch_size=6)

    assert _mse(student, teacher, crops) < 0.5 * error_before
    changed = {w.path for w in model.weights if not np.array_equal(np.array(w), before[w.path])}
    assert any("block0_dwconv" in p for p in changed) and any("dense" in p for p in changed)
    assert not any("stem_conv" in p or "stem_bn" in p for p in changed)  # kept float: untouched
    assert not any("moving_" in p or "gamma" in p for p in changed)  # BatchNorm scales stay: same folding
    assert all(np.array_equal(np.array(w), before[w.path]) for w in reference.weights)


def test_fine_tuning_refuses_what_it_cannot_use(small_model_path, crops):
    model = keras.saving.load_model(small_model_path, compile=False)
    with pytest.raises(TuningError, match="needs training crops"):
        fine_tune_for_int8(model, model, crops[:0], crops, steps=1)
    headless = keras.Model(model.input, model.layers[-2].output)
    with pytest.raises(TuningError, match="must be a Dense with softmax"):
        Int8Simulation(headless)
