import keras
import numpy as np

from hv.preprocess import to_model_batch
from mobile.bias_correction import correct_rounding_bias, round_weights, rounding_shift


def _round_like_tflite(folded: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    scale = np.abs(folded).max(axis=axes, keepdims=True) / 127
    return np.round(folded / scale) * scale


def test_rounding_shift_is_the_output_change_of_int8_weights_on_a_mean_input():
    rng = np.random.default_rng(0)
    for layer, kernel_shape, axes in (
        (keras.layers.Conv2D(5, 3, padding="valid", use_bias=False), (3, 3, 4, 5), (0, 1, 2)),
        (keras.layers.DepthwiseConv2D(3, padding="valid", use_bias=False), (3, 3, 4, 1), (0, 1, 3)),
    ):
        layer.build((None, 6, 6, 4))
        kernel = rng.normal(size=kernel_shape).astype(np.float32)
        layer.set_weights([kernel])
        factor = rng.uniform(0.5, 2, 5 if kernel_shape[-1] == 5 else 4).astype(np.float32)
        mean = rng.uniform(-1, 3, 4).astype(np.float32)
        image = np.broadcast_to(mean, (1, 6, 6, 4)).astype(np.float32)
        depthwise = kernel_shape[-1] == 1
        folded = kernel * (factor[None, None, :, None] if depthwise else factor)
        exact = np.asarray(layer(image))[0, 0, 0] * factor
        layer.set_weights([_round_like_tflite(folded, axes) / (factor[None, None, :, None] if depthwise else factor)])
        rounded = np.asarray(layer(image))[0, 0, 0] * factor
        layer.set_weights([kernel])
        assert np.allclose(rounding_shift(layer, factor, mean), rounded - exact, atol=1e-4)


def test_correction_moves_only_the_biases_of_quantised_layers(tiny_model_path):
    model = keras.saving.load_model(tiny_model_path, compile=False)
    backbone = model.get_layer("backbone")
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in backbone.layers}
    crops = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    reference = model.predict_on_batch(to_model_batch(crops))

    corrected = correct_rounding_bias(model, crops, keep_float=("stem_conv",))

    assert corrected > 0
    stem_bn, first_dw_bn = backbone.get_layer("stem_bn"), backbone.get_layer("block0_dw_bn")
    assert np.array_equal(stem_bn.get_weights()[1], before["stem_bn"][1])  # kept float: untouched
    assert not np.array_equal(first_dw_bn.get_weights()[1], before["block0_dw_bn"][1])
    for layer in backbone.layers:  # kernels, BatchNorm scales and statistics never change
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            assert np.array_equal(layer.get_weights()[0], before[layer.name][0])
        if isinstance(layer, keras.layers.BatchNormalization):
            for i in (0, 2, 3):
                assert np.array_equal(layer.get_weights()[i], before[layer.name][i])
    # The shifts are rounding-sized: the float model's answers barely move.
    assert np.abs(model.predict_on_batch(to_model_batch(crops)) - reference).max() < 0.05


def test_corrected_biases_cancel_the_mean_shift_of_rounded_weights(tiny_model_path):
    crops = np.random.default_rng(3).integers(150, 256, (8, 32, 32, 3), dtype=np.uint8)  # mean far from 0

    def stem_mean(model):
        probe = keras.Model(model.get_layer("backbone").input, model.get_layer("backbone").get_layer("stem_bn").output)
        return np.asarray(probe.predict_on_batch(to_model_batch(crops)))[:, 1:-1, 1:-1].mean(axis=(0, 1, 2))

    exact = stem_mean(keras.saving.load_model(tiny_model_path, compile=False))
    rounded = keras.saving.load_model(tiny_model_path, compile=False)
    assert round_weights(rounded) > 0
    corrected = keras.saving.load_model(tiny_model_path, compile=False)
    correct_rounding_bias(corrected, crops)
    round_weights(corrected)
    shift_before = np.abs(stem_mean(rounded) - exact).max()
    assert shift_before > 0
    assert np.abs(stem_mean(corrected) - exact).max() < 0.1 * shift_before


def test_each_run_of_an_average_is_corrected(two_runs):
    from hv.model import average_models, member_models

    crops = np.random.default_rng(1).integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    single = correct_rounding_bias(keras.saving.load_model(two_runs[0], compile=False), crops)
    average = average_models([keras.saving.load_model(p, compile=False) for p in two_runs])
    betas = [m.get_layer("backbone").get_layer("block0_dw_bn").get_weights()[1].copy() for m in member_models(average)]
    assert correct_rounding_bias(average, crops) == 2 * single > 0
    for member, before in zip(member_models(average), betas):
        assert not np.array_equal(member.get_layer("backbone").get_layer("block0_dw_bn").get_weights()[1], before)
