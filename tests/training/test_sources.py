import json
import logging

import cv2
import numpy as np
import pytest

from hv.labels import CLASS_NAMES, OTHER_ID
from tests.conftest import draw_field, replace
from tests.stream.fakes import FixedClassifier
from training.data import DataError, discover, discover_sources, hash_part, split_by_field
from training.evaluate import evaluate
from training.train import train

LAB_B = {"cell_frac": 0.42, "cast": (1.05, 0.95, 0.85)}


def _write_lab(root, rng, *, classes=CLASS_NAMES, per_class=3, prefix="", **style):
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = draw_field(rng, label % 4, width=160, height=120, **style)
            cv2.imwrite(str(folder / f"{prefix}{name[:2]}_{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def labs(tmp_path):
    rng = np.random.default_rng(7)
    a = _write_lab(tmp_path / "lab_a" / "TRAIN", rng)
    b = _write_lab(tmp_path / "lab_b" / "TRAIN", rng, **LAB_B)
    other = _write_lab(tmp_path / "lab_b" / "OTHER", rng, classes=("basophil", "erythroblast"), per_class=6, **LAB_B)
    return a, b, other


def test_sources_are_discovered_together_and_named(labs):
    a, b, other = labs
    data, reports = discover_sources([str(a), str(b), str(other)])
    assert len(data) == 12 + 12 + 12
    assert set(data.source_of()) == {"lab_a/TRAIN", "lab_b/TRAIN", "lab_b/OTHER"}
    assert data.labels.count(OTHER_ID) == 12  # basophil and erythroblast folders are "other"
    assert [r.counts.get("other", 0) for r in reports] == [0, 0, 12]


def test_a_hash_part_is_fixed_and_the_two_parts_are_disjoint(labs):
    _, _, other = labs
    train_part, _ = discover(f"{other}#train", require_all=False)
    test_part, _ = discover(f"{other}#test", any_other=True, require_all=False)
    assert not set(train_part.paths) & set(test_part.paths)
    assert len(train_part) + len(test_part) == 12
    assert all(hash_part(p) == "train" for p in train_part.paths)


def test_missing_folders_and_classes_are_named(labs, tmp_path, caplog):
    a, b, _ = labs
    with pytest.raises(DataError, match="nowhere does not exist"):
        discover_sources([str(a), str(tmp_path / "nowhere")])
    for path in (b / "monocyte").iterdir():
        path.unlink()
    with caplog.at_level(logging.WARNING):
        discover_sources([str(a), str(b)])  # lab a still has monocytes
    assert "lab_b/TRAIN has no images of monocyte" in caplog.text
    assert "monocyte holds no image files" in caplog.text
    for path in (a / "monocyte").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no usable images of monocyte in any of"):
        discover_sources([str(a), str(b)])
    with pytest.raises(DataError, match=r"#val': after '#' expected 'train' or 'test'"):
        discover_sources([f"{a}#val"])


def test_validation_is_stratified_by_lab_and_class(labs):
    a, b, _ = labs
    data, _ = discover_sources([str(a), str(b)])
    _, val = split_by_field(data, 0.34, seed=0)
    assert sorted(zip(val.source_of(), val.labels)) == sorted(
        (source, label) for source in ("lab_a/TRAIN", "lab_b/TRAIN") for label in range(4))


def test_two_labs_and_other_cells_train_together_and_are_reported_apart(tmp_path, labs, config):
    a, b, other = labs
    config = replace(config, data=replace(config.data, train_dirs=(str(a), str(b), f"{other}#train")))
    run = train(config, tmp_path / "runs" / "two_labs")
    reports = json.loads((run / "data_report.json").read_text())
    assert [r["root"].split("/")[-2:] for r in reports] == [["lab_a", "TRAIN"], ["lab_b", "TRAIN"],
                                                           ["lab_b", "OTHER#train"]]
    from hv.classifier import load_classifier

    out = tmp_path / "eval"
    metrics = evaluate(load_classifier(run / "model.keras"), [str(a), str(b), f"{other}#test"], config, out)
    assert set(metrics["sources"]) == {"lab_a/TRAIN", "lab_b/TRAIN", "lab_b/OTHER#test"}
    assert metrics["n_images"] == 24 and metrics["other"]["n"] == len(discover(f"{other}#test", any_other=True,
                                                                             require_all=False)[0])
    for folder in ("lab_a_TRAIN", "lab_b_TRAIN", "lab_b_OTHER_test"):
        saved = json.loads((out / folder / "metrics.json").read_text())
        assert (out / folder / "confusion_matrix.png").stat().st_size > 1000
        assert saved["data"].endswith(folder.replace("_TRAIN", "/TRAIN").replace("_OTHER_test", "/OTHER#test"))
    assert (out / "confusion_matrix.png").is_file()


def test_cells_outside_the_four_are_scored_by_the_share_flagged(tmp_path, labs, config):
    a, _, other = labs
    says_other = FixedClassifier((0.1, 0.1, 0.1, 0.1, 0.6))
    metrics = evaluate(says_other, [str(a), str(other)], config, tmp_path / "eval")
    assert metrics["other"] == {"n": 12, "flagged_share": 1.0, "flagged_share_ci95": pytest.approx([0.757, 1.0],
                                                                                                    abs=1e-3)}
    assert metrics["flagged_share"] == 1.0 and metrics["accuracy"] == 0.0
    assert metrics["per_class"]["eosinophil"]["flagged_share"] == 1.0
    says_lymphocyte = FixedClassifier((0.1, 0.6, 0.1, 0.2))
    metrics = evaluate(says_lymphocyte, [str(a), str(other)], config, tmp_path / "eval2")
    assert metrics["other"]["flagged_share"] == 0.0 and metrics["flagged_share"] == 0.0
    assert metrics["accuracy"] == pytest.approx(0.25)
