"""The model `hv` uses when none is named: a complete app package that classifies a sample."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from hv.bundled import DEFAULT_MODEL, SAMPLE_FIELDS
from hv.classifier import LiteRTClassifier, load_classifier
from hv.cli import DEFAULT_CONFIG
from hv.config import load_config
from hv.labels import OUTPUT_NAMES
from hv.preprocess import field_to_model_input, read_image_rgb
from mobile.package import check_package, crop_description


def test_bundled_model_is_a_checked_int8_package():
    description = check_package(DEFAULT_MODEL.parent)
    assert description["variant"].startswith("int8")
    # Two runs averaged (BENCHMARKS.md, "Averaging two runs"): each ~4.3 MB in int8.
    assert DEFAULT_MODEL.stat().st_size <= 10_000_000
    assert len(description["averaged_runs"]) == 2
    assert "the average of 2 runs" in (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()


def test_bundled_package_states_the_crop_and_edge_rule_of_the_default_config():
    crop = check_package(DEFAULT_MODEL.parent)["crop"]
    config = load_config(DEFAULT_CONFIG)
    for key in ("cell_diameter_frac", "red_cell_ratio", "fallback_diameter_frac", "crop_context", "edge_fill"):
        assert crop[key] == getattr(config.locator, key), key
    assert crop["edge_margin_frac"] == config.stream.edge_margin_frac
    # Every rule an app needs to crop as hv does, a stream's running scale included, as the code states it today.
    assert crop == crop_description(config)


# One single-class sample field of each class (hv/bundled/fields/wbc_labels.csv).
SAMPLE_LABELS = {"BloodImage_00001": "neutrophil", "BloodImage_00009": "eosinophil",
                 "BloodImage_00015": "monocyte", "BloodImage_00021": "lymphocyte"}


def test_bundled_model_classifies_shipped_samples():
    classifier = load_classifier(DEFAULT_MODEL)
    assert isinstance(classifier, LiteRTClassifier)
    config = load_config(DEFAULT_CONFIG)
    for name, expected in SAMPLE_LABELS.items():
        crop, located = field_to_model_input(read_image_rgb(SAMPLE_FIELDS / f"{name}.jpg"), config)
        assert located
        probs = classifier.predict(crop[None])[0]
        assert OUTPUT_NAMES[probs.argmax()] == expected, f"{name}: {dict(zip(OUTPUT_NAMES, probs.round(3)))}"


def test_one_litert_classifier_serves_several_threads():
    # The web app's live thread and its request handlers share one classifier.
    classifier = load_classifier(DEFAULT_MODEL)
    crops = np.random.default_rng(0).integers(0, 256, (8, classifier.image_size, classifier.image_size, 3), np.uint8)
    alone = classifier.predict(crops)
    with ThreadPoolExecutor(4) as pool:
        order = list(range(len(crops))) * 4
        together = np.stack(list(pool.map(lambda i: classifier.predict(crops[i : i + 1])[0], order)))
    np.testing.assert_array_equal(together, np.tile(alone, (4, 1)))
