"""``hv export``: convert, verify every variant with LiteRT, choose what ships, package it."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np

from hv.classifier import KerasClassifier
from hv.config import Config
from hv.labels import NUM_OUTPUTS
from mobile.bias_correction import correct_rounding_bias
from mobile.convert import VARIANTS, convert_keras
from mobile.model_card import render_model_card
from mobile.package import describe, write_package
from mobile.quantisation_aware import fine_tune_for_int8
from mobile.verify import verify_litert
from training.data import Split, discover_sources, source_name
from training.evaluate import crop_fields

log = logging.getLogger(__name__)

# What a shipped quantised model may lose against its float Keras source.
MAX_ACCURACY_DROP = 0.01
MIN_AGREEMENT = 0.99


def sample_split(split: Split, count: int, seed: int) -> Split:
    """Up to ``count`` images, the same share from each class present (and "other"), seeded."""
    rng = np.random.default_rng(seed)
    labels = np.array(split.labels)
    present = [label for label in range(NUM_OUTPUTS) if (labels == label).any()]
    picked: list[int] = []
    for label in present:
        members = np.flatnonzero(labels == label)
        take = min(len(members), max(1, count // len(present)))
        picked += rng.choice(members, size=take, replace=False).tolist()
    picked.sort()
    return split.select(i in set(picked) for i in range(len(split)))


def calibration_crops(train_split: Split, config: Config, count: int | None = None) -> np.ndarray:
    """The int8 calibration set: crops of ``count`` TRAIN fields (default: the config's), the same share per class."""
    picked = sample_split(train_split, count or config.export.calibration_images, config.train.seed)
    crops, _ = crop_fields(list(picked.paths), config)
    return crops


def int8_preparation(model_path: Path, config: Config, calibration: np.ndarray,
                     tuning: np.ndarray) -> Callable[[keras.Model, tuple[str, ...]], None] | None:
    """What ``convert_keras`` does to the copy of the model it converts to int8, from ``config.export``.

    Bias correction for weight rounding, then quantisation-aware fine-tuning on ``tuning``
    crops towards the unchanged float model at ``model_path``. None when both are off.
    """
    settings = config.export
    if not settings.bias_correction and not settings.qat_steps:
        return None

    def prepare(model: keras.Model, keep_float: tuple[str, ...]) -> None:
        if settings.bias_correction:
            correct_rounding_bias(model, calibration, keep_float=keep_float)
        if settings.qat_steps:
            log.info("quantisation-aware fine-tuning (keeping %s float): %d steps on %d TRAIN crops",
                     ", ".join(keep_float) or "nothing", settings.qat_steps, len(tuning))
            fine_tune_for_int8(model, keras.saving.load_model(model_path, compile=False), tuning, calibration,
                               keep_float=keep_float, steps=settings.qat_steps,
                               learning_rate=settings.qat_learning_rate, seed=config.train.seed)

    return prepare


def choose_variant(results: dict[str, dict], requested: str) -> tuple[str, str]:
    """The variant to ship and why: ``auto`` prefers full int8, then int8 with float layers, then
    the smallest variant that holds."""
    if requested != "auto":
        return requested, f"{requested} was requested"
    for variant in ("int8", "int8_mixed", "dynamic", "float16", "float32"):
        r = results.get(variant)
        if r is None:
            continue
        drop = r["reference_accuracy"] - r["accuracy"]
        if r["top1_agreement"] >= MIN_AGREEMENT and drop <= MAX_ACCURACY_DROP:
            return variant, (f"{variant} agrees with the Keras model on {r['top1_agreement']:.1%} of the "
                             f"verification images, accuracy {r['accuracy']:.2%} (Keras {r['reference_accuracy']:.2%})")
    return "float32", "no quantised variant held the accuracy bound"


def export(model_path: Path, config: Config, out_dir: Path, *, variants: tuple[str, ...] = VARIANTS,
           ship: str = "auto", calibration_images: int | None = None, verify_images: int | None = None,
           verify_data: str | None = None) -> dict:
    """Convert ``model_path``, verify each variant on TEST crops, and write the app package.

    Writes ``out_dir/variants/*.tflite``, ``out_dir/verification.{json,md}`` and the package
    in ``out_dir/package``. Returns the verification report.
    """
    reference = KerasClassifier(model_path)
    size = dataclasses.replace(config.model, image_size=reference.image_size)
    config = dataclasses.replace(config, model=size)
    train_split, train_reports = discover_sources(config.data.train_dirs)
    calibration = calibration_crops(train_split, config, calibration_images)
    verify_sources = [verify_data] if verify_data else list(config.data.test_dirs)
    test_split, _ = discover_sources(verify_sources, any_other=True)
    if verify_images:
        test_split = sample_split(test_split, verify_images, seed=1)
    test_crops, _ = crop_fields(list(test_split.paths), config)
    labels = np.array(test_split.labels)

    tuning = np.zeros((0,), np.uint8)
    if config.export.qat_steps and {"int8", "int8_mixed"} & set(variants):
        # A draw of its own (seed + 1), the same share per class as the calibration crops.
        picked = sample_split(train_split, config.export.qat_images, config.train.seed + 1)
        tuning, _ = crop_fields(list(picked.paths), config)
    prepare = int8_preparation(model_path, config, calibration, tuning)
    files = convert_keras(model_path, out_dir / "variants", variants, calibration, config.export.int8_float_layers,
                          prepare)
    reference_probs = reference.predict(test_crops)
    results = {}
    for variant, path in files.items():
        log.info("verifying %s with LiteRT on %d images", variant, len(labels))
        results[variant] = verify_litert(path, reference_probs, test_crops, labels)
    shipped, reason = choose_variant(results, ship)
    report = {"model": str(model_path), "verified_on": ", ".join(source_name(s) for s in verify_sources),
              "n_images": int(len(labels)), "calibration_images": int(len(calibration)),
              "variants": results, "shipped": shipped, "reason": reason}
    (out_dir / "verification.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "verification.md").write_text(verification_table(report))

    metrics = {"verified_on": report["verified_on"], "n_images": report["n_images"],
               **{k: results[shipped][k] for k in ("accuracy", "reference_accuracy", "top1_agreement")},
               "confusion_matrix": results[shipped]["confusion_matrix"]}
    training = {"data": ", ".join(source_name(s) for s in config.data.train_dirs),
                "counts": {source_name(r.root): r.counts for r in train_reports}, "input": config.data.input}
    int8_tuning = None
    if len(tuning):
        int8_tuning = {"steps": config.export.qat_steps, "learning_rate": config.export.qat_learning_rate,
                       "train_images": int(len(tuning))}
    description = describe(files[shipped], shipped, config, metrics, training, int8_tuning)
    write_package(files[shipped], out_dir / "package", description, render_model_card(description, report))
    return report


def verification_table(report: dict) -> str:
    rows = ["| variant | size (MB) | accuracy | Keras accuracy | top-1 agreement | max prob diff "
            "| ms/image 1 thread | ms/image 2 threads |", "|---|---|---|---|---|---|---|---|"]
    for variant, r in report["variants"].items():
        rows.append(f"| {variant} | {r['size_mb']} | {r['accuracy']:.2%} | {r['reference_accuracy']:.2%} | "
                    f"{r['top1_agreement']:.2%} | {r['max_abs_prob_diff']:.3f} | {r['latency_ms_1_thread']} | "
                    f"{r['latency_ms_2_threads']} |")
    return (f"Verified with LiteRT on {report['n_images']} images of {report['verified_on']}.\n\n"
            + "\n".join(rows) + f"\n\nShipped: **{report['shipped']}**: {report['reason']}.\n")
