"""TEST accuracy of the fixed training recipe over several seeds.

For each seed: train on data.train_dir with config.toml's recipe (no look at TEST), then
evaluate the final model on TEST and TEST_SIMPLE. Prints and writes the per-seed figures
and their mean, standard deviation and range, plus training wall time.

Usage:
    python benchmarks/classifier_accuracy.py --seeds 0 1 2 [--config config.toml] [--runs runs/bench]
        [--set train.label_smoothing=0 train.phase2.unfreeze_layers=38]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tomllib
from pathlib import Path

import numpy as np

from hv.classifier import load_classifier
from hv.config import load_config, override
from training.evaluate import evaluate
from training.train import train

REPO = Path(__file__).resolve().parent.parent


def summarise(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values, ddof=1)), 4) if len(values) > 1
            else 0.0, "min": round(min(values), 4), "max": round(max(values), 4)}


def parse_setting(text: str) -> tuple[str, object]:
    """``section.key=value`` with a TOML value, as the config file would hold it."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected section.key=value")
    try:
        return key.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not TOML ({exc})") from exc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(REPO / "config.toml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", default=str(REPO / "runs" / "bench"))
    parser.add_argument("--simple", help="TEST_SIMPLE folder (default: beside data.test_dir)")
    parser.add_argument("--set", type=parse_setting, nargs="+", default=[], metavar="KEY=VALUE",
                        help="recipe variant: config values replaced for every seed")
    parser.add_argument("--tta", action="store_true",
                        help="also report test-time augmentation (8 turned and mirrored copies)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    base = override(load_config(args.config), **dict(args.set))
    simple = args.simple or str(Path(base.data.test_dir).parent / "TEST_SIMPLE")
    per_seed = []
    for seed in args.seeds:
        config = override(base, **{"train.seed": seed})
        run = Path(args.runs) / f"{config.model.backbone}_{config.data.input}_seed{seed}"
        if not (run / "model.keras").exists():
            train(config, run)
        classifier = load_classifier(run / "model.keras")
        row = {"seed": seed, "run": str(run),
               "train_wall_s": json.loads((run / "timing.json").read_text())["train_wall_s"]}
        for name, folder, tta in (("test", config.data.test_dir, False), ("test_simple", simple, False),
                                  *((("test_tta", config.data.test_dir, True),) if args.tta else ())):
            m = evaluate(classifier, folder, config, run / f"eval_{name}", tta=tta)
            row[name] = {"accuracy": m["accuracy"], "accuracy_ci95": m["accuracy_ci95"], "macro_f1": m["macro_f1"],
                         "eosinophil_recall": m["per_class"]["eosinophil"]["recall"], "n_images": m["n_images"],
                         "recall": {k: round(v["recall"], 4) for k, v in m["per_class"].items()}}
        per_seed.append(row)
        print(json.dumps(row, indent=2))
    evaluated = [k for k in ("test", "test_simple", "test_tta") if k in per_seed[0]]
    summary = {k: {metric: summarise([r[k][metric] for r in per_seed])
                   for metric in ("accuracy", "macro_f1", "eosinophil_recall")} for k in evaluated}
    summary["train_wall_s"] = summarise([r["train_wall_s"] for r in per_seed])
    result = {"config": dataclasses.asdict(base), "seeds": per_seed, "summary": summary}
    out = Path(args.runs) / "classifier_accuracy.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
