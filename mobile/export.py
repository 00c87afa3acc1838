"""``hv export``: convert, verify every variant with LiteRT, choose what ships, package it."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np

from hv.classifier import KerasClassifier
from hv.config import Config
from hv.labels import NUM_OUTPUTS, OTHER_ID
from hv.model import member_models
from mobile.bias_correction import correct_rounding_bias
from mobile.convert import VARIANTS, convert_keras
from mobile.model_card import percent, render_model_card
from mobile.package import describe, write_package
from mobile.quantisation_aware import fine_tune_for_int8
from mobile.verify import verify_litert
from training.data import DataError, Split, discover, source_name
from training.evaluate import crop_fields
from training.heldout import model_split
from training.lab_adaptation import collect_crops, image_files
from training.trained_crop import crop_mismatches, mismatch_text

log = logging.getLogger(__name__)

# What a shipped quantised model may lose against its float Keras source.
MAX_ACCURACY_DROP = 0.01
MIN_AGREEMENT = 0.99
# Cells of a new lab's held-out images that verify each variant (unless --verify-images says).
LAB_VERIFY_CELLS = 500


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
            log.info("quantisation-aware fine-tuning (keeping %s float): %d steps on %d crops",
                     ", ".join(keep_float) or "nothing", settings.qat_steps, len(tuning))
            reference = keras.saving.load_model(model_path, compile=False)
            # An average of runs: each run is tuned towards its own float answers (their mean is the model's).
            for member, float_member in zip(member_models(model), member_models(reference)):
                fine_tune_for_int8(member, float_member, tuning, calibration, keep_float=keep_float,
                                   steps=settings.qat_steps, learning_rate=settings.qat_learning_rate,
                                   seed=config.train.seed)

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
        if r["accuracy"] is None:  # unlabelled verification crops (a new lab): agreement alone
            if r["top1_agreement"] >= MIN_AGREEMENT:
                return variant, (f"{variant} agrees with the Keras model on {r['top1_agreement']:.1%} of the "
                                 "verification cells (unlabelled: no accuracy)")
            continue
        drop = r["reference_accuracy"] - r["accuracy"]
        if r["top1_agreement"] >= MIN_AGREEMENT and drop <= MAX_ACCURACY_DROP:
            return variant, (f"{variant} agrees with the Keras model on {r['top1_agreement']:.1%} of the "
                             f"verification images, accuracy {r['accuracy']:.2%} (Keras {r['reference_accuracy']:.2%})")
    return "float32", "no quantised variant held the accuracy bound"


@dataclasses.dataclass(frozen=True)
class Int8Data:
    """The crops an export works with: int8 calibration, fine-tuning, and verification (the variant is chosen there)."""

    calibration: np.ndarray
    tuning: np.ndarray
    verification: np.ndarray
    labels: np.ndarray | None  # the verification crops' classes; None: unlabelled, agreement with Keras only
    chosen_on: str
    training: dict  # model.json's "training"


def training_lab_data(model_path: Path, config: Config, variants: tuple[str, ...], calibration_images: int | None,
                      verify_images: int | None) -> Int8Data:
    """Crops of the config's labelled training sources; verification on the images the model's training held out.

    The split is the model's own (``training.heldout``), not today's config's, so no
    verification image is one the model trained on.
    """
    split = model_split(model_path, config)
    train_split, validation, chosen_on = split.trained_on, split.held_out, split.described
    if not len(validation):  # nothing held out (val_fraction 0) or all of it copies: training images stand in
        validation, chosen_on = train_split, "training images (the model held out none it did not train on)"
    calibration = calibration_crops(train_split, config, calibration_images)
    if verify_images:
        validation = sample_split(validation, verify_images, seed=1)
    val_crops, _ = crop_fields(list(validation.paths), config)
    tuning = np.zeros((0,), np.uint8)
    if config.export.qat_steps and {"int8", "int8_mixed"} & set(variants):
        # A draw of its own (seed + 1), the same share per class as the calibration crops.
        picked = sample_split(train_split, config.export.qat_images, config.train.seed + 1)
        tuning, _ = crop_fields(list(picked.paths), config)
    training = {"data": ", ".join(source_name(s) for s in config.data.train_dirs),
                "counts": {source_name(r.root): r.counts for r in split.reports}, "input": config.data.input}
    return Int8Data(calibration, tuning, val_crops, np.array(validation.labels), chosen_on, training)


def new_lab_data(folders: Sequence[str], config: Config, variants: tuple[str, ...], calibration_images: int | None,
                 verify_images: int | None) -> Int8Data:
    """Crops of a new lab's unlabelled images, for a model adapted to it (``hv adapt``).

    The int8 ranges and the fine-tuning (which matches the float model's outputs, so needs no
    labels) then see the activations the app will meet in that lab. A quarter of the images,
    never used for calibration or fine-tuning, verify each variant by its agreement with the
    Keras model. Crops come from the locator, as in ``hv adapt`` and the stream.
    """
    files = image_files(folders)
    if len(files) < 4:
        raise DataError(f"{len(files)} image files under {', '.join(map(str, folders))}; an export for a new lab "
                        "needs at least 4 (a quarter of them verify the int8 model): add more fields")
    order = np.random.default_rng(config.train.seed).permutation(len(files))
    held_out = set(order[: len(files) // 4].tolist())
    converting = [f for i, f in enumerate(files) if i not in held_out]
    verifying = [f for i, f in enumerate(files) if i in held_out]
    calibration_count = calibration_images or config.export.calibration_images
    tuning_count = config.export.qat_images if config.export.qat_steps and {"int8", "int8_mixed"} & set(variants) else 0
    crops, unreadable, _, _ = collect_crops(converting, config, calibration_count + tuning_count)
    verification, unreadable_too, _, _ = collect_crops(verifying, config, verify_images or LAB_VERIFY_CELLS)
    if not len(crops) or not len(verification):
        raise DataError(f"no whole white cell located in the images under {', '.join(map(str, folders))} "
                        f"({len(unreadable) + len(unreadable_too)} unreadable); check the folder holds smear fields")
    calibration, tuning = crops[:calibration_count], crops[calibration_count:]
    if tuning_count and not len(tuning):  # few cells: the calibration cells serve again, as a labelled draw may
        tuning = crops
    lab = ", ".join(source_name(f) for f in folders)
    training = {"data": ", ".join(source_name(s) for s in config.data.train_dirs), "counts": {},
                "input": config.data.input, "adapted_to": lab}
    return Int8Data(calibration, tuning, verification, None,
                    f"unlabelled cells of {lab} (images held out from calibration)", training)


def export(model_path: Path, config: Config, out_dir: Path, *, variants: tuple[str, ...] = VARIANTS,
           ship: str = "auto", calibration_images: int | None = None, verify_images: int | None = None,
           verify_data: str | None = None, lab_data: Sequence[str] = ()) -> dict:
    """Convert ``model_path``, choose a variant on validation crops, score it on TEST, write the app package.

    The variant is chosen on the training sources' images the model's training held out
    (its run's ``validation.txt``, or the split rebuilt from the config saved beside it, less
    copies of originals it trained on: ``training.heldout``), never on a test set; each test source
    (``verify_data`` or ``data.test_dirs``) is then scored once, for the shipped variant.
    With ``lab_data`` (folders of a new lab's unlabelled images, for a model ``hv adapt`` made)
    the int8 model is calibrated, fine-tuned and chosen on that lab's cells instead
    (``new_lab_data``), and only ``verify_data`` is scored.
    Writes ``out_dir/variants/*.tflite``, ``out_dir/verification.{json,md}`` and the package
    in ``out_dir/package``. Returns the verification report.
    """
    mismatches = crop_mismatches(model_path, config.locator)
    if mismatches:  # the package would calibrate on, and describe to apps, crops the model never learnt from
        raise DataError(mismatch_text(model_path, mismatches))
    reference = KerasClassifier(model_path)
    size = dataclasses.replace(config.model, image_size=reference.image_size)
    config = dataclasses.replace(config, model=size)
    if lab_data:
        data = new_lab_data(lab_data, config, variants, calibration_images, verify_images)
    else:
        data = training_lab_data(model_path, config, variants, calibration_images, verify_images)
    prepare = int8_preparation(model_path, config, data.calibration, data.tuning)
    files = convert_keras(model_path, out_dir / "variants", variants, data.calibration,
                          config.export.int8_float_layers, prepare)
    reference_probs = reference.predict(data.verification)
    results = {}
    for variant, path in files.items():
        log.info("verifying %s with LiteRT on %d crops of %s", variant, len(data.verification), data.chosen_on)
        results[variant] = verify_litert(path, reference_probs, data.verification, data.labels)
    shipped, reason = choose_variant(results, ship)

    # The config's test sets are the training labs': for a model adapted to another lab, only --data.
    test_sources = [verify_data] if verify_data else [] if lab_data else list(config.data.test_dirs)
    tests = {}
    for source in test_sources:
        # Whole, whatever verify_images says: a test set is read once, and a sample of it would be read less well.
        split, _ = discover(source, any_other=True, require_all=False)
        crops, _ = crop_fields(list(split.paths), config)
        log.info("scoring the shipped %s on %s (%d images)", shipped, source_name(source), len(split))
        tests[source_name(source)] = verify_litert(files[shipped], reference.predict(crops), crops,
                                                   np.array(split.labels))
    report = {"model": str(model_path), "chosen_on": data.chosen_on, "n_images": int(len(data.verification)),
              "calibration_images": int(len(data.calibration)), "variants": results, "shipped": shipped,
              "reason": reason, "verified_on": ", ".join(tests), "test": tests}
    (out_dir / "verification.json").write_text(json.dumps(report, indent=2) + "\n")
    (out_dir / "verification.md").write_text(verification_table(report))

    metrics = {"verified_on": report["verified_on"], **summarise_test_sets(tests)}
    int8_tuning = None
    if len(data.tuning):
        int8_tuning = {"steps": config.export.qat_steps, "learning_rate": config.export.qat_learning_rate,
                       "train_images": int(len(data.tuning))}
        if lab_data:  # the crops are the new lab's cells, not training images
            int8_tuning["images_from"] = data.training["adapted_to"]
    description = describe(files[shipped], shipped, config, metrics, data.training, int8_tuning,
                           source_model=model_path)
    write_package(files[shipped], out_dir / "package", description, render_model_card(description, report))
    return report


def summarise_test_sets(tests: dict[str, dict]) -> dict:
    """The test sets together, for ``model.json``.

    ``accuracy`` and ``reference_accuracy`` (the Keras model's) are over the same four-class
    cells: cells outside the four (a source such as pbc/OTHER) have no right class among them,
    and their flagged share stays in ``per_source``. ``top1_agreement`` needs no labels: it is
    over every test image.
    """
    if not tests:
        return {"n_images": 0, "accuracy": None, "reference_accuracy": None, "top1_agreement": None,
                "confusion_matrix": None, "per_source": {}}
    ours = np.sum([np.array(t["confusion_matrix"]) for t in tests.values()], axis=0)
    theirs = np.sum([np.array(t["reference_confusion_matrix"]) for t in tests.values()], axis=0)
    sizes = {name: int(np.sum(t["confusion_matrix"])) for name, t in tests.items()}
    four, total = int(ours[:OTHER_ID].sum()), sum(sizes.values())
    return {"n_images": four,
            "accuracy": float(np.trace(ours[:OTHER_ID, :OTHER_ID]) / four) if four else None,
            "reference_accuracy": float(np.trace(theirs[:OTHER_ID, :OTHER_ID]) / four) if four else None,
            "top1_agreement": (sum(t["top1_agreement"] * sizes[name] for name, t in tests.items()) / total
                               if total else None),
            "confusion_matrix": ours.tolist(),
            "per_source": {name: {"n_images": sizes[name],
                                  **{k: t[k] for k in ("accuracy", "reference_accuracy", "top1_agreement")}}
                           for name, t in tests.items()}}


def verification_table(report: dict) -> str:
    rows = ["| variant | size (MB) | accuracy | Keras accuracy | top-1 agreement | max prob diff "
            "| ms/image 1 thread | ms/image 2 threads |", "|---|---|---|---|---|---|---|---|"]
    for variant, r in report["variants"].items():
        rows.append(f"| {variant} | {r['size_mb']} | {percent(r['accuracy'])} | {percent(r['reference_accuracy'])} | "
                    f"{r['top1_agreement']:.2%} | {r['max_abs_prob_diff']:.3f} | {r['latency_ms_1_thread']} | "
                    f"{r['latency_ms_2_threads']} |")
    tests = ["| test set | images | accuracy (other: share flagged) | Keras | top-1 agreement |",
             "|---|---|---|---|---|"]
    for name, r in report.get("test", {}).items():
        tests.append(f"| {name} | {int(np.sum(r['confusion_matrix']))} | {r['accuracy']:.2%} | "
                     f"{r['reference_accuracy']:.2%} | {r['top1_agreement']:.2%} |")
    scored = ("The shipped variant, scored once on each test set:\n\n" + "\n".join(tests) if report.get("test")
              else "No labelled test set was given (--data): the shipped variant's accuracy is not measured.")
    return (f"Variants verified with LiteRT on {report['n_images']} crops from {report['chosen_on']}; the variant "
            f"is chosen there.\n\n" + "\n".join(rows)
            + f"\n\nShipped: **{report['shipped']}**: {report['reason']}.\n\n"
            + scored + "\n")
