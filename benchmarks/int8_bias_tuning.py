"""Bias tuning and quantisation-aware training, measured: do they raise int8's agreement?

Bias correction (``mobile.bias_correction``) removes the expected shift of weight rounding,
layer by layer, analytically. What it cannot see is activation-rounding noise passed through
ReLU6 and the residual adds. ``mobile.quantisation_aware`` runs a copy of the model through a
simulation of TFLite's int8 rounding and trains it towards the float model's logits. This
script measures two forms of it: only the biases (the BatchNorm betas and Dense biases that
TFLite folds into int32 biases; the int8 weights stay as they are), and with ``--kernels``
the kernels too (quantisation-aware training, what ``hv export`` does by default).

For each seed (batch order): bias-correct a copy of the model, fine-tune it, convert it to
the config's ``int8_mixed`` and measure top-1 agreement with the untouched Keras model on
TEST in LiteRT. The first row is bias correction alone. Measured (BENCHMARKS.md): biases
alone bring no reliable gain; with the kernels, agreement rose with the number of steps.

Usage: python benchmarks/int8_bias_tuning.py [--model models/hv_lite0.keras] [--steps 300]
       [--learning-rate 3e-4] [--seeds 0 1] [--kernels] [--out out/int8_bias_tuning]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import keras
from int8_inputs import load_int8_inputs  # benchmarks/ is on sys.path when run as a script

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.classifier import KerasClassifier, LiteRTClassifier
from hv.config import load_config
from mobile.bias_correction import correct_rounding_bias
from mobile.convert import convert_keras
from mobile.export import sample_split
from mobile.quantisation_aware import fine_tune_for_int8
from training.evaluate import crop_fields

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--learning-rate", type=float, default=3e-4)
    parser.add_argument("--tuning-images", type=int, default=1600, help="TRAIN crops to tune on")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--kernels", action="store_true", help="train the kernels too (quantisation-aware training)")
    parser.add_argument("--out", default=str(REPO / "out" / "int8_bias_tuning"))
    args = parser.parse_args()
    config = load_config(args.config)
    float_layers = config.export.int8_float_layers
    inputs = load_int8_inputs(config)
    crops, labels, calibration = inputs.test_crops, inputs.test_labels, inputs.calibration
    tuning, _ = crop_fields(list(sample_split(inputs.train, args.tuning_images, config.train.seed + 1).paths),
                            config)
    reference_model = keras.saving.load_model(args.model, compile=False)
    reference = KerasClassifier(args.model).predict(crops).argmax(1)
    out = Path(args.out)
    rows = []
    for seed in (None, *args.seeds):  # None: bias correction alone, the baseline
        final_mse = []

        def prepare(model, keep_float, seed=seed, final_mse=final_mse):
            correct_rounding_bias(model, calibration, keep_float=keep_float)
            if seed is not None:
                final_mse.append(fine_tune_for_int8(model, reference_model, tuning, calibration, keep_float=keep_float,
                                                    steps=args.steps, learning_rate=args.learning_rate,
                                                    train_kernels=args.kernels, seed=seed))

        folder = out / ("bias_correction_only" if seed is None else f"tuned_seed{seed}")
        path = convert_keras(Path(args.model), folder, ("int8_mixed",), calibration, float_layers,
                             prepare)["int8_mixed"]
        answers = LiteRTClassifier(path, num_threads=2).predict(crops).argmax(1)
        rows.append({"tuning_seed": seed, "steps": 0 if seed is None else args.steps, "kernels": args.kernels,
                     "final_logit_mse": final_mse[0] if final_mse else None,
                     "agreement": round(float((answers == reference).mean()), 4),
                     "answers_differing": int((answers != reference).sum()),
                     "accuracy": round(float((answers == labels).mean()), 4)})
        print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8_bias_tuning.json").write_text(json.dumps({"model": args.model, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
