import pytest

from training.data import DataError, Split, discover, field_group, split_by_field


def test_discovery_reports_bad_files_and_unknown_folders(tiny_dataset_dir):
    eos = tiny_dataset_dir / "EOSINOPHIL"
    (eos / "zero.jpg").write_bytes(b"")
    (eos / "text.png").write_text("not an image")
    good = (eos / "_0_0.png").read_bytes()
    (eos / "truncated.png").write_bytes(good[: len(good) // 2])
    (eos / "notes.txt").write_text("x")
    (tiny_dataset_dir / "SCANS").mkdir()
    split, report = discover(tiny_dataset_dir)
    assert report.counts == {"eosinophil": 3, "lymphocyte": 3, "monocyte": 3, "neutrophil": 3}
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report.skipped}
    assert reasons["zero.jpg"] == "empty file"
    assert reasons["text.png"].startswith("unreadable image")
    assert reasons["truncated.png"].startswith("unreadable image")
    assert reasons["notes.txt"] == "not an image file type"
    assert report.unknown_folders == [str(tiny_dataset_dir / "SCANS")]
    assert len(split) == 12


def test_lower_case_class_folders_work(tmp_path, tiny_dataset_dir):
    for folder in tiny_dataset_dir.iterdir():
        folder.rename(folder.with_name(folder.name.lower()))
    split, _ = discover(tiny_dataset_dir)
    assert sorted(set(split.labels)) == [0, 1, 2, 3]


def test_missing_or_empty_class_stops_with_a_clear_message(tmp_path, tiny_dataset_dir):
    for path in (tiny_dataset_dir / "MONOCYTE").iterdir():
        path.unlink()
    with pytest.raises(DataError, match="no usable images for class\\(es\\) monocyte"):
        discover(tiny_dataset_dir)
    with pytest.raises(DataError, match="does not exist"):
        discover(tmp_path / "nowhere")


def test_field_split_keeps_copies_of_a_field_together():
    paths = tuple(f"/d/{c}/_{f}_{k}.jpeg" for c in range(4) for f in range(10) for k in range(5))
    labels = tuple(c for c in range(4) for _ in range(10) for _ in range(5))
    train, val = split_by_field(Split(paths, labels), 0.2, seed=0)
    train_groups = {field_group(p, y) for p, y in zip(train.paths, train.labels)}
    val_groups = {field_group(p, y) for p, y in zip(val.paths, val.labels)}
    assert not train_groups & val_groups
    assert len(val_groups) == 8 and len(val) == 40  # 2 fields of each class, all 5 copies
    assert split_by_field(Split(paths, labels), 0.2, seed=0) == (train, val)  # seeded


def test_tiny_images_are_skipped_and_reported(tiny_dataset_dir):
    import cv2
    import numpy as np

    eos = tiny_dataset_dir / "EOSINOPHIL"
    for name, shape in (("one.png", (1, 1)), ("row.png", (1, 40)), ("column.png", (40, 1)), ("small.png", (8, 8))):
        cv2.imwrite(str(eos / name), np.full((*shape, 3), 200, np.uint8))
    split, report = discover(tiny_dataset_dir)
    reasons = {entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in report.skipped}
    assert reasons["one.png"] == "image too small (1x1 px; a field must be at least 16 px each way)"
    assert reasons["row.png"].startswith("image too small (40x1 px")
    assert {"column.png", "small.png"} <= set(reasons)
    assert len(split) == 12
