"""The web page's adaptation to a visitor's microscope: from counted crops or uploaded fields, no labels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from hv.classifier import KerasClassifier, file_sha256
from stream.microscope_adaptation import AdaptationError, MicroscopeAdapter
from tests.conftest import draw_field


def _stem_bn(model):
    return model.get_layer("backbone").get_layer("stem_bn")


def _purple_crops(count: int, seed: int = 0) -> np.ndarray:
    """Crops with a strong colour cast, as from a microscope with another stain and lamp."""
    rng = np.random.default_rng(seed)
    return np.stack([draw_field(rng, i % 4, width=32, height=32, cast=(0.8, 0.6, 1.2)) for i in range(count)])


def test_adapting_on_counted_crops_gives_a_new_model_and_leaves_the_served_one(tiny_model_path, config):
    served_sha = file_sha256(tiny_model_path)
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=4)
    crops = _purple_crops(8)
    adapted = adapter.from_crops(crops, "live session abc (virtual microscope)")
    try:
        assert file_sha256(tiny_model_path) == served_sha  # the served model's file is never changed
        assert adapted.path.is_file() and adapted.sha256 == file_sha256(adapted.path) != served_sha
        report = json.loads(adapted.report_path.read_text())
        assert report["cells"] == 8 and report["cells_from"] == "live session abc (virtual microscope)"
        assert report["source_sha256"] == served_sha and report["layers"] == ["stem_bn", "top_bn"]
        # The first normalisation now holds the statistics of these crops, not the served model's.
        served_mean = np.array(_stem_bn(KerasClassifier(tiny_model_path).model).moving_mean)
        adapted_mean = np.array(_stem_bn(adapted.classifier.model).moving_mean)
        assert not np.allclose(adapted_mean, served_mean)
        assert adapted.classifier.predict(crops).shape == (8, 5)
        assert adapted.explainer.heat_map(crops[0], 0)[0].shape == (32, 32)
        assert "8 cells" in adapted.describe() and adapted.path.name in adapted.describe()
    finally:
        adapted.close()
    assert not adapted.path.parent.exists()  # the temporary folder goes with it


def test_a_check_measures_the_cells_the_adaptation_would_use_and_changes_nothing(tiny_model_path, config):
    from training.lab_adaptation import check_cells

    served_sha = file_sha256(tiny_model_path)
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=4, max_cells=6)
    crops = _purple_crops(8)
    checked = adapter.check_crops(crops, "live session abc")
    assert checked.cells == 6  # at most max_cells, as adapting
    assert checked == check_cells(KerasClassifier(tiny_model_path).model, crops[:6])
    assert file_sha256(tiny_model_path) == served_sha
    adapted = adapter.from_crops(crops, "live session abc")
    try:  # the report keeps what the check said of the same cells
        assert adapted.report.feature_shift == pytest.approx(checked.feature_shift, rel=1e-4)
        assert adapted.report.advice == checked.advice
    finally:
        adapted.close()
    with pytest.raises(AdaptationError, match="3 cells from live session x; adapting needs at least 4"):
        adapter.check_crops(crops[:3], "live session x")


def test_too_few_cells_say_how_many_are_needed(tiny_model_path, config):
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=32)
    with pytest.raises(AdaptationError, match="5 cells from live session x; adapting needs at least 32"):
        adapter.from_crops(_purple_crops(5), "live session x")


def test_crops_of_another_size_are_refused(tiny_model_path, config):
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=1)
    with pytest.raises(AdaptationError, match="64 px crops; the model to adapt takes 32 px"):
        adapter.from_crops(np.zeros((3, 64, 64, 3), np.uint8), "somewhere")


def test_uploaded_fields_are_adapted_on_and_bad_files_named(tmp_path, tiny_model_path, config):
    rng = np.random.default_rng(3)
    files = []
    for i in range(6):
        path = tmp_path / f"field{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(draw_field(rng, i % 4, cast=(0.9, 0.7, 1.1)), cv2.COLOR_RGB2BGR))
        files.append(path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=3)
    adapted = adapter.from_images([*files, broken])
    try:
        assert adapted.report.images_found == 7 and adapted.report.unreadable == ["broken.png"]
        assert adapted.report.cells >= 3 and "uploaded images" in adapted.report.cells_from
        assert "1 unreadable files skipped" in adapted.describe()
        checked = adapter.check_images([*files, broken])  # the same cells, checked without adapting
        assert checked.cells == adapted.report.cells
        assert checked.feature_shift == pytest.approx(adapted.report.feature_shift, rel=1e-4)
    finally:
        adapted.close()


def test_uploads_without_enough_cells_name_the_unreadable_files(tmp_path, tiny_model_path, config):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), (205, 215, 235), np.uint8))  # tinted plasma: no cell, some colour
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=2)
    with pytest.raises(AdaptationError, match=r"0 whole white cells found in 2 uploaded images \(1 unreadable: "
                                              r"broken.jpg\); adapting needs at least 2"):
        adapter.from_images([blank, broken])
    with pytest.raises(AdaptationError, match="upload field images"):
        adapter.from_images([])
    with pytest.raises(AdaptationError, match="upload field images"):
        adapter.check_images([])


def _save_corrections(folder, counts: dict[str, int], seed: int = 1):
    """Crops saved as the Review tab saves them (stream.corrections.CorrectionStore)."""
    from hv.labels import OUTPUT_NAMES
    from stream.corrections import CorrectionStore

    store, crops = CorrectionStore(folder), _purple_crops(sum(counts.values()), seed)
    labels = [OUTPUT_NAMES.index(name) for name, n in counts.items() for _ in range(n)]
    for track, (crop, label) in enumerate(zip(crops, labels)):
        store.save(crop, label, model_label="neutrophil", confidence=0.5, track_id=track, session="s1",
                   source="virtual microscope", model_sha256=None)


def test_the_review_tabs_corrections_retrain_the_adapted_models_head(tmp_path, tiny_model_path, config):
    _save_corrections(tmp_path / "corrections", {"eosinophil": 5, "lymphocyte": 5})
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=4)
    crops = _purple_crops(8)
    plain = adapter.from_crops(crops, "live session abc")
    taught = adapter.from_crops(crops, "live session abc", labelled_folder=tmp_path / "corrections")
    try:
        report = json.loads(taught.report_path.read_text())
        assert report["labelled"]["per_class"] == {"eosinophil": 5, "lymphocyte": 5}
        assert report["labelled_from"] == [str(tmp_path / "corrections")]
        tuned = report["labelled"]
        assert (f"head retrained on the **10 cells corrected on the Review tab** (5 eosinophil, 5 lymphocyte; "
                f'{tuned["lab_cells_flagged_after"]:.0%} of the 8 unlabelled cells flagged "other" '
                f'({tuned["lab_cells_flagged_before"]:.0%} before))') in taught.describe()
        heads = [a.classifier.model.get_layer("pred").get_weights()[0] for a in (plain, taught)]
        assert not np.allclose(*heads)
        stems = [np.array(_stem_bn(a.classifier.model).moving_mean) for a in (plain, taught)]
        np.testing.assert_array_equal(*stems)  # adapted alike: only the head learnt the labels
    finally:
        plain.close()
        taught.close()


def test_too_few_corrections_say_so_before_any_work(tmp_path, tiny_model_path, config):
    _save_corrections(tmp_path / "corrections", {"eosinophil": 3})
    adapter = MicroscopeAdapter(tiny_model_path, config, min_cells=4)
    with pytest.raises(AdaptationError, match=r"corrected on the Review tab: .*corrections: 3 labelled cells "
                                              "of 1 classes.*correct more cells, or adapt without them"):
        adapter.from_crops(_purple_crops(8), "live session abc", labelled_folder=tmp_path / "corrections")
    with pytest.raises(AdaptationError, match="no cell has been corrected on the Review tab yet"):
        adapter.from_crops(_purple_crops(8), "live session abc", labelled_folder=tmp_path / "nothing-yet")
