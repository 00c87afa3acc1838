"""Quantisation-aware fine-tuning: train a copy of the model through a simulation of TFLite int8.

Post-training int8 rounds every weight and every activation tensor. Bias correction
(``mobile.bias_correction``) removes the expected shift of weight rounding; what remains is
activation-rounding noise spread over every block (BENCHMARKS.md, error by layer), and it
flips about 1 % of the bundled model's answers. Here a copy of the model runs the way
TFLite's int8 kernels would (``Int8Simulation``: fake-quantised weights and activations,
straight-through gradients), and its kernels and biases are trained for a few hundred steps
so that its simulated int8 logits match the untouched float model's (distillation on TRAIN
crops, no labels). The copy is then converted as usual; the float model stays the reference
that the int8 model is verified against.

What is simulated is TFLite's post-training int8: symmetric int8 weights with one scale per
output channel on BatchNorm-folded kernels (``mobile.bias_correction`` rounds the same way),
and one range per activation tensor, the min/max over the calibration crops of the float
model. The converter fuses a convolution with its BatchNorm and activation into one op, so
only the op's output is rounded; an Add's input that feeds only the Add shares the Add's
range; layers kept float round nothing but the output they hand to an int8 layer.
"""

from __future__ import annotations

import logging

import keras
import numpy as np
import tensorflow as tf

from hv.preprocess import to_model_batch

log = logging.getLogger(__name__)

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_WEIGHTED = (*_CONVOLUTIONS, keras.layers.Dense)
_FUSED_AFTER = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation)
_PASS_THROUGH = (keras.layers.InputLayer, keras.layers.Dropout)


class TuningError(ValueError):
    """The model cannot be fine-tuned for int8 (its last layer is not a softmax Dense, or no crops)."""


def _fake_quant_kernel(kernel, depthwise: bool):
    """Symmetric int8 per output channel, straight-through gradient (TFLite's weight rounding)."""
    if depthwise:  # (kh, kw, C, 1): the channel axis is 2
        kernel = kernel[..., 0]
    limit = tf.stop_gradient(tf.reduce_max(tf.abs(kernel), axis=tuple(range(len(kernel.shape) - 1))))
    limit = tf.maximum(limit, 1e-12)
    rounded = tf.quantization.fake_quant_with_min_max_vars_per_channel(kernel, -limit, limit, num_bits=8,
                                                                      narrow_range=True)
    return rounded[..., None] if depthwise else rounded


class Int8Simulation:
    """Runs an ``hv`` model (a functional model, possibly nested) with TFLite's int8 rounding.

    ``logits(x)`` returns the pre-softmax output of the last Dense. Activation ranges are
    unset until ``calibrate``; before that only weights are rounded. With ``quantise=False``
    nothing is rounded: the float model's logits.
    """

    def __init__(self, model: keras.Model, keep_float: tuple[str, ...] = (), quantise: bool = True):
        last = model.layers[-1]
        if not isinstance(last, keras.layers.Dense) or last.activation is not keras.activations.softmax:
            raise TuningError(f"{model.name}: the last layer must be a Dense with softmax, not {last.name}")
        self.model, self.quantise = model, quantise
        self.ranges: dict[str, tuple[float, float]] = {}
        self._recording: dict[str, list[float]] | None = None
        self._round_weights = True
        self._consumers: dict[int, list[keras.layers.Layer]] = {}
        self._graphs = self._collect(model)
        self._float = self._float_layers(set(keep_float))
        self._folding = self._batch_norm_after_convolutions()

    # -- graph structure -------------------------------------------------------------------
    def _collect(self, graph: keras.Model) -> list[keras.Model]:
        graphs = [graph]
        for layer in graph.layers:
            for node in layer._inbound_nodes:  # noqa: SLF001 (Keras has no public node list)
                for tensor in node.input_tensors:
                    self._consumers.setdefault(id(tensor), []).append(layer)
            if isinstance(layer, keras.Model):
                graphs += self._collect(layer)
        return graphs

    def _layers(self):
        for graph in self._graphs:
            for layer in graph.layers:
                if not isinstance(layer, keras.Model):
                    yield layer

    def _next(self, layer: keras.layers.Layer) -> list[keras.layers.Layer]:
        return self._consumers.get(id(layer.output), [])

    def _fused_into_next(self, layer: keras.layers.Layer) -> bool:
        following = self._next(layer)
        return (isinstance(layer, (*_CONVOLUTIONS, keras.layers.BatchNormalization)) and len(following) == 1
                and isinstance(following[0], _FUSED_AFTER))

    def _float_layers(self, names: set[str]) -> set[str]:
        """The named layers and the BatchNorm / activation the converter fuses into each."""
        float_layers = set(names)
        for layer in self._layers():
            while layer.name in float_layers and self._fused_into_next(layer):
                layer = self._next(layer)[0]
                float_layers.add(layer.name)
        return float_layers

    def _batch_norm_after_convolutions(self) -> dict[str, keras.layers.BatchNormalization]:
        return {layer.name: self._next(layer)[0] for layer in self._layers()
                if isinstance(layer, _CONVOLUTIONS) and len(self._next(layer)) == 1
                and isinstance(self._next(layer)[0], keras.layers.BatchNormalization)}

    def _rounds_output(self, layer: keras.layers.Layer) -> bool:
        if isinstance(layer, _PASS_THROUGH) or layer is self.model.layers[-1] or self._fused_into_next(layer):
            return False
        following = self._next(layer)
        if layer.name in self._float:  # rounded only where it enters an int8 layer
            return any(f.name not in self._float for f in following)
        return True

    def bias_variables(self) -> list:
        """The biases TFLite folds into its int32 biases, of every layer it quantises."""
        variables = []
        for layer in self._layers():
            if layer.name in self._float:
                continue
            if isinstance(layer, keras.layers.BatchNormalization):
                variables.append(layer.beta)
            elif isinstance(layer, _WEIGHTED) and layer.use_bias:
                variables.append(layer.bias)
        return variables

    def kernel_variables(self) -> list:
        """The kernels of every layer TFLite quantises (quantisation-aware training)."""
        return [layer.kernel for layer in self._layers()
                if isinstance(layer, _WEIGHTED) and layer.name not in self._float]

    # -- forward ---------------------------------------------------------------------------
    def _weighted(self, layer: keras.layers.Layer, x):
        kernel = layer.kernel
        depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
        if self.quantise and self._round_weights and layer.name not in self._float:
            factor = 1.0
            batch_norm = self._folding.get(layer.name)
            if batch_norm is not None:
                factor = tf.stop_gradient(batch_norm.gamma / tf.sqrt(batch_norm.moving_variance + batch_norm.epsilon))
                if depthwise:
                    factor = factor[None, None, :, None]
            kernel = _fake_quant_kernel(kernel * factor, depthwise) / factor
        if isinstance(layer, keras.layers.Dense):
            y = keras.ops.matmul(x, kernel)
        elif depthwise:
            y = keras.ops.depthwise_conv(x, kernel, strides=layer.strides, padding=layer.padding,
                                         dilation_rate=layer.dilation_rate)
        else:
            y = keras.ops.conv(x, kernel, strides=layer.strides, padding=layer.padding,
                               dilation_rate=layer.dilation_rate)
        if layer.use_bias:
            y = y + layer.bias
        if layer is self.model.layers[-1]:
            return y  # logits: the softmax is left out
        return layer.activation(y)

    def _round(self, layer: keras.layers.Layer, y):
        if not self.quantise or not self._rounds_output(layer):
            return y
        if self._recording is not None:
            self._recording.setdefault(layer.name, []).extend([float(tf.reduce_min(y)), float(tf.reduce_max(y))])
            return y
        if layer.name not in self.ranges:
            return y
        low, high = self.ranges[layer.name]
        return tf.quantization.fake_quant_with_min_max_args(y, min(low, 0.0), max(high, 0.0), num_bits=8)

    def _run(self, graph: keras.Model, x):
        values = {id(graph.inputs[0]): x}
        for layer in graph.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            node = next(n for n in layer._inbound_nodes  # noqa: SLF001
                        if all(id(t) in values for t in n.input_tensors))
            inputs = [values[id(t)] for t in node.input_tensors]
            args = inputs if len(inputs) > 1 else inputs[0]
            if isinstance(layer, keras.Model):
                y = self._run(layer, args)
            elif isinstance(layer, _WEIGHTED):
                y = self._weighted(layer, args)
            elif isinstance(layer, keras.layers.Dropout):
                y = args
            else:
                y = layer(args, training=False) if isinstance(layer, keras.layers.BatchNormalization) else layer(args)
            values[id(node.output_tensors[0])] = y if isinstance(layer, keras.Model) else self._round(layer, y)
        return values[id(graph.outputs[0])]

    def logits(self, x):
        return self._run(self.model, x)

    def calibrate(self, crops: np.ndarray, batch_size: int = 20) -> None:
        """Each rounded tensor's range: its min/max over ``crops`` in the float model, as TFLite's."""
        # The converter calibrates the float graph: ranges come from unrounded weights.
        quantise, self.quantise, self._round_weights = self.quantise, True, False
        self._recording = {}
        try:
            for start in range(0, len(crops), batch_size):
                self.logits(to_model_batch(crops[start : start + batch_size]))
        finally:
            self.quantise, self._round_weights = quantise, True
        recorded, self._recording = self._recording, None
        self.ranges = {name: (min(v), max(v)) for name, v in recorded.items()}
        for layer in self._layers():  # an Add's input that feeds only the Add shares its range
            following = self._next(layer)
            if (layer.name in self.ranges and len(following) == 1 and isinstance(following[0], keras.layers.Add)
                    and following[0].name in self.ranges):
                self.ranges[layer.name] = self.ranges[following[0].name]


def fine_tune_for_int8(model: keras.Model, reference: keras.Model, crops: np.ndarray, calibration: np.ndarray,
                       keep_float: tuple[str, ...] = (), steps: int = 600, learning_rate: float = 1e-5,
                       train_kernels: bool = True, batch_size: int = 16, seed: int = 0) -> float:
    """Train ``model``, in place, so that its simulated int8 logits match ``reference``'s float ones.

    Args:
        model: the copy to convert (already bias-corrected, if at all); its weights change.
        reference: the float model whose answers int8 should reproduce (not changed).
        crops: (n, S, S, 3) uint8 training crops; each step draws a batch, flipped and
            turned by quarter turns (a cell has no up or down).
        calibration: the int8 calibration crops (activation ranges).
        keep_float: layers the TFLite model keeps in float32 (never trained).
        train_kernels: train the quantised layers' kernels as well as their biases; with
            biases alone agreement did not improve (BENCHMARKS.md).

    Returns:
        The mean squared logit error over the last tenth of the steps.

    Raises:
        TuningError: no crops, or the model does not end in a softmax Dense.
    """
    if len(crops) == 0:
        raise TuningError("int8 fine-tuning needs training crops; none were given")
    student = Int8Simulation(model, keep_float)
    student.calibrate(calibration)
    teacher = Int8Simulation(reference, quantise=False)
    variables = student.bias_variables() + (student.kernel_variables() if train_kernels else [])
    # Decaying to zero averages out the batch-to-batch jitter of the weights at the end.
    optimizer = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(learning_rate, max(1, steps)))

    @tf.function
    def step(x):
        target = teacher.logits(x)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(student.logits(x) - target))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(seed)
    progress = keras.utils.Progbar(steps, stateful_metrics=["logit_mse"])
    losses = []
    for i in range(steps):
        batch = crops[rng.choice(len(crops), min(batch_size, len(crops)), replace=False)]
        if rng.random() < 0.5:
            batch = batch[:, :, ::-1]
        batch = np.ascontiguousarray(np.rot90(batch, int(rng.integers(4)), axes=(1, 2)))
        losses.append(float(step(tf.constant(to_model_batch(batch)))))
        progress.update(i + 1, [("logit_mse", losses[-1])])
    tail = float(np.mean(losses[-max(1, steps // 10):])) if losses else 0.0
    log.info("int8 fine-tuning: %d variables over %d steps, final logit MSE %.4f", len(variables), steps, tail)
    return tail
