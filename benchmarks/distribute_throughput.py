"""Training-step throughput under tf.distribute: one device vs MirroredStrategy over logical devices.

On this 2-core CPU the CPU is split into ``--devices`` logical devices (as the tests do); each
strategy trains the full model (``hv.model.build_model``, top layers open as in phase 2) on
the same random global batches for ``--steps`` steps after ``--warmup`` steps, alternating,
``--repeats`` times. Reports images per second (median) and the ratio. Logical devices share
the same cores, so this checks that the distributed path runs and costs little, not a speed-up;
on a GPU machine the same script with ``--gpu`` compares one GPU with all of them.

Usage: python benchmarks/distribute_throughput.py [--devices 2] [--batch 16] [--steps 10] [--repeats 3] [--gpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16, help="global batch")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu", action="store_true", help="compare one GPU with all GPUs instead")
    args = parser.parse_args()

    import tensorflow as tf

    if not args.gpu:
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.devices)
    import keras
    import numpy as np

    from hv.config import ModelConfig
    from hv.model import build_model, unfreeze_top_layers

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.batch, args.image_size, args.image_size, 3)).astype(np.float32)
    y = keras.utils.to_categorical(rng.integers(0, 5, args.batch), 5)
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    kind = "GPU" if args.gpu else "CPU"
    devices = [d.name for d in tf.config.list_logical_devices(kind)]
    strategies = {"one device": tf.distribute.OneDeviceStrategy(devices[0]),
                  f"mirrored over {len(devices)}": tf.distribute.MirroredStrategy(devices)}
    models = {}
    for name, strategy in strategies.items():
        with strategy.scope():
            model = build_model(ModelConfig(weights="none", image_size=args.image_size))
            unfreeze_top_layers(model, 56)
            model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
        model.fit(dataset, steps_per_epoch=args.warmup, epochs=1, verbose=0)  # trace and warm up
        models[name] = model
    rates: dict[str, list[float]] = {name: [] for name in strategies}
    for _ in range(args.repeats):
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0)
            rates[name].append(args.steps * args.batch / (time.perf_counter() - started))
    medians = {name: statistics.median(v) for name, v in rates.items()}
    names = list(medians)
    report = {"devices": devices, "global_batch": args.batch, "image_size": args.image_size, "steps": args.steps,
              "images_per_s": rates, "median_images_per_s": medians, "ratio": medians[names[1]] / medians[names[0]]}
    out = REPO / "out" / "distribute_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
