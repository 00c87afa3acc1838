import pytest

from training.data import BUNDLED_ORIGINALS, DataError, Split, discover, field_group, load_originals, split_by_field


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


def test_original_split_keeps_every_copy_of_an_original_on_one_side():
    # Ten originals per class, each copied under two ids; originals 0 and 1 also have copies
    # filed in the next class folder (one field, two labels), as in blood-cells/.
    rows = []
    for c in range(4):
        for f in range(10):
            for fid in (f, f + 100):
                rows += [(f"/d/set/TRAIN/C{c}/_{fid}_{k}.jpeg", c, f"o{c}-{f}") for k in range(3)]
        rows += [(f"/d/set/TRAIN/C{(c + 1) % 4}/_{200 + f}_0.jpeg", (c + 1) % 4, f"o{c}-{f}") for f in (0, 1)]
    originals = {"/".join(p.split("/")[-4:]): o for p, _, o in rows}
    data = Split(tuple(p for p, _, _ in rows), tuple(y for _, y, _ in rows))
    train, val = split_by_field(data, 0.2, seed=3, originals=originals)
    key = {p: o for p, _, o in rows}
    train_originals, val_originals = {key[p] for p in train.paths}, {key[p] for p in val.paths}
    assert not train_originals & val_originals
    assert len(val_originals) == 8  # two originals of each class's ten
    assert len(train) + len(val) == len(data)
    # By file-name ids alone, copies of one original land on both sides: the leak this prevents.
    train_ids, val_ids = split_by_field(data, 0.2, seed=3)
    assert {key[p] for p in train_ids.paths} & {key[p] for p in val_ids.paths}


def test_folds_of_one_seed_hold_out_every_original_once():
    paths = tuple(f"/d/{c}/_{f}_{k}.jpeg" for c in range(4) for f in range(10) for k in range(3))
    labels = tuple(c for c in range(4) for _ in range(10) for _ in range(3))
    data = Split(paths, labels)
    held = []
    for i in range(1, 5):
        train, val = split_by_field(data, 0.9, seed=2, fold=(i, 4))  # val_fraction is not used with a fold
        val_groups = {field_group(p, y) for p, y in zip(val.paths, val.labels)}
        assert not val_groups & {field_group(p, y) for p, y in zip(train.paths, train.labels)}
        assert len(train) + len(val) == len(data)
        fields_per_class = 3 if i <= 2 else 2  # each class's 10 fields cut into folds of 3, 3, 2, 2
        assert [val.labels.count(c) for c in range(4)] == [3 * fields_per_class] * 4
        held.append(val_groups)
    assert sum(len(g) for g in held) == 40 and len(set().union(*held)) == 40  # each field in exactly one fold
    assert split_by_field(data, 0.1, seed=2, fold=(3, 4)) == split_by_field(data, 0.1, seed=2, fold=(3, 4))


def test_original_groups_file_errors_are_specific(tmp_path):
    assert load_originals("none") == {}
    with pytest.raises(DataError, match="original_groups: cannot read .*nowhere.csv"):
        load_originals(str(tmp_path / "nowhere.csv"))
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("image,field\na.jpg,1\n")
    with pytest.raises(DataError, match="wrong.csv has columns \\['field', 'image'\\]; expected path,group"):
        load_originals(str(wrong))


def test_bundled_grouping_lists_blood_cells_train_and_test():
    originals = load_originals("bundled")
    assert BUNDLED_ORIGINALS.is_file()
    parts = {key.split("/")[1] for key in originals}
    assert {key.split("/")[0] for key in originals} == {"blood-cells"} and parts == {"TRAIN", "TEST"}
    assert len(originals) == 9957 + 2487
    assert len(set(originals.values())) < 9957 // 10  # dozens of copies per original


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


def test_images_without_colour_are_skipped_and_reported(tiny_dataset_dir):
    import cv2

    from hv.preprocess import NO_COLOUR

    field = cv2.imread(str(next((tiny_dataset_dir / "EOSINOPHIL").glob("*.png"))))
    cv2.imwrite(str(tiny_dataset_dir / "EOSINOPHIL" / "mono.png"), cv2.cvtColor(field, cv2.COLOR_BGR2GRAY))
    split, report = discover(tiny_dataset_dir)
    skipped = [(entry["path"].rsplit("/", 1)[-1], entry["reason"]) for entry in report.skipped]
    assert skipped == [("mono.png", NO_COLOUR)]
    assert len(split) == 12
