import json

import numpy as np
import pytest

from hv import cli
from tests.conftest import SAMPLES


def _write_config(tmp_path, config_fixture, val_fraction=0.0) -> str:
    path = tmp_path / "config.toml"
    path.write_text(
        f'[data]\ntrain_dirs = ["{config_fixture.data.train_dirs[0]}"]\nval_fraction = {val_fraction}\n'
        f'[model]\nweights = "none"\nimage_size = 32\n'
        "[train]\nbatch_size = 4\n[train.phase1]\nepochs = 1\n[train.phase2]\nepochs = 1\n"
    )
    return str(path)


def test_train_and_evaluate_in_process(tmp_path, config, capsys):
    config_path = _write_config(tmp_path, config, val_fraction=0.34)
    assert cli.main(["--config", config_path, "train", "--out", str(tmp_path / "runs"), "--name", "r{0}",
                     "--seed", "1", "--keep-epoch-models", "--fold", "2/3"]) == 0
    model = tmp_path / "runs" / "r{0}" / "model.keras"  # braces in a run name are not a format pattern
    assert model.is_file()
    saved = json.loads((model.parent / "config.json").read_text())
    assert saved["train"]["seed"] == 1 and saved["data"]["val_fold"] == "2/3"
    # One model per epoch (phase 1, then phase 2); the last answers as model.keras does.
    assert sorted(p.name for p in model.parent.glob("epoch_*.keras")) == ["epoch_01.keras", "epoch_02.keras"]
    from hv.classifier import KerasClassifier

    crops = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    last, final = (KerasClassifier(p).model.predict(crops, verbose=0) for p in (model.parent / "epoch_02.keras", model))
    np.testing.assert_allclose(last, final, atol=1e-4)
    assert cli.main(["--config", config_path, "evaluate", "--model", str(model), "--data",
                     config.data.train_dirs[0], "--out", str(tmp_path / "eval")]) == 0
    assert '"n_images": 12' in capsys.readouterr().out

    # --held-out scores exactly the images the training held out (validation.txt), per source.
    assert cli.main(["--config", config_path, "evaluate", "--model", str(model), "--held-out",
                     "--out", str(tmp_path / "held_out")]) == 0
    metrics = json.loads((tmp_path / "held_out" / "metrics.json").read_text())
    assert metrics["n_images"] == 4 and "validation.txt, seed 1" in metrics["data"]
    (source,) = metrics["sources"].values()
    with open(tmp_path / "held_out" / source["folder"] / "predictions.csv") as f:
        scored = {line.split(",")[0] for line in list(f)[1:]}
    listed = {line.split("\t")[0] for line in (model.parent / "validation.txt").read_text().splitlines()}
    assert scored == listed and len(listed) == 4
    from training.data import discover_sources, split_by_field

    data, _ = discover_sources(config.data.train_dirs)
    assert listed == set(split_by_field(data, 0.34, 1, fold=(2, 3))[1].paths)  # the fold, not val_fraction


def test_held_out_needs_the_models_saved_config(tmp_path, config, tiny_model_path, capsys):
    config_path = _write_config(tmp_path, config, val_fraction=0.34)
    assert cli.main(["--config", config_path, "evaluate", "--model", str(tiny_model_path), "--held-out",
                     "--out", str(tmp_path / "x")]) == 1
    assert "--held-out needs the config hv train saved beside the model" in capsys.readouterr().err
    assert cli.main(["--config", config_path, "evaluate", "--model", str(tiny_model_path), "--held-out",
                     "--data", config.data.train_dirs[0], "--out", str(tmp_path / "x")]) == 1
    assert "drop --data" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_classify_sample_fields(tmp_path, tiny_model_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(out)]) == 0
    rows = (out / "cells.csv").read_text().strip().splitlines()
    assert rows[0] == "image,x,y,w,h,label,confidence,view,cell_diameter_px"
    # The view depends on the locator alone: BloodImage_00021's cell and 00043's second keep clear of the edges.
    assert [row.split(",")[7] for row in rows[1:]] == ["cut", "cut", "cut", "whole", "cut", "whole"]
    assert len(rows) - 1 == 6  # five sample fields, one of them with two white cells
    assert len(list(out.glob("*.annotated.png"))) == len(list(SAMPLES.glob("*.jpg")))
    # BCCD's fields show cells at the magnification the model learnt from: no field is said to be small.
    assert all(float(row.split(",")[8]) > 100 for row in rows[1:])
    assert "labels less sure" not in capsys.readouterr().out


def test_classify_says_when_an_image_was_saved_too_compressed(tmp_path, tiny_model_path, capsys):
    """A field saved at JPEG quality 12 is classified all the same, with a note; the BCCD original (75) has none."""
    import cv2

    original = SAMPLES / "BloodImage_00021.jpg"
    blocky = tmp_path / "blocky.jpg"
    cv2.imwrite(str(blocky), cv2.imread(str(original)), [cv2.IMWRITE_JPEG_QUALITY, 12])
    out = tmp_path / "out"
    assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(out), str(original), str(blocky)]) == 0
    printed = capsys.readouterr().out
    assert f"{blocky}: saved as JPEG at about quality 12 (under 23, stream.jpeg_quality_min)" in printed
    assert "save at 30 or more, or as PNG" in printed and f"{original}: saved as JPEG" not in printed
    assert str(blocky) in (out / "cells.csv").read_text()  # its cells are still listed


def test_classify_says_when_cells_are_smaller_than_the_model_learnt_from(tmp_path, tiny_model_path, capsys):
    """A field seen at a quarter of BCCD's magnification: its cell is still found and classified, and said to be
    small. At a third (about 65 px) it is not: one field's estimate spreads, so a still image's bar is 0.8 of
    locator.min_cell_diameter_px (60 px), under which 1 % of blood-cells/TRAIN's images read."""
    import cv2

    field = cv2.imread(str(SAMPLES / "BloodImage_00021.jpg"))
    quarter, third = tmp_path / "quarter.png", tmp_path / "third.png"
    for path, factor in ((quarter, 1 / 4), (third, 1 / 3)):
        cv2.imwrite(str(path), cv2.resize(field, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA))
    out = tmp_path / "out"
    assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(out), str(quarter), str(third)]) == 0
    printed = capsys.readouterr().out
    rows = [row.split(",") for row in (out / "cells.csv").read_text().strip().splitlines()[1:]]
    assert [row[0] for row in rows] == [str(quarter), str(third)]  # one cell each, classified
    assert float(rows[0][8]) < 60 < float(rows[1][8]) < 75
    assert f"{quarter}: cells about " in printed and "fewer than the 60 px the model learnt from" in printed
    assert "(0.8 x locator.min_cell_diameter_px for one image)" in printed  # the bar, and where it comes from
    assert "use a higher magnification" in printed and f"{third}: cells about" not in printed


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--model", "missing.keras", "--out", "x"], "missing.keras does not exist"),
        (["train", "--data", "/no/such/folder"], "data folder /no/such/folder does not exist"),
        (["--config", "/no/such.toml", "train"], "config file /no/such.toml not found"),
        (["export", "--model", "m.keras", "--out", "x", "--qat-steps", "-1"],
         "export.qat_steps = -1: expected a value >= 0"),
        (["train", "--fold", "4/3"], "data.val_fold = '4/3': expected \"I/K\""),
    ],
)
def test_user_errors_are_one_line_and_exit_1(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = cli.REPO_ROOT / "runs"  # the default run folder: a failed start must leave nothing there
    before = set(runs.iterdir()) if runs.exists() else set()
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*"))
    assert (set(runs.iterdir()) if runs.exists() else set()) == before


def test_bad_config_value_names_the_key(tmp_path, capsys):
    bad = tmp_path / "c.toml"
    bad.write_text("[train]\nbatch_size = 0\n")
    assert cli.main(["--config", str(bad), "train"]) == 1
    assert "train.batch_size = 0: expected a value > 0" in capsys.readouterr().err


def test_classify_skips_bad_inputs_and_keeps_same_named_images_apart(tmp_path, tiny_model_path, capsys):
    import shutil

    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    shutil.copy(SAMPLES / "BloodImage_00001.jpg", first / "field.jpg")
    shutil.copy(SAMPLES / "BloodImage_00009.jpg", second / "field.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    (tmp_path / "no_images").mkdir()
    args = [str(first / "field.jpg"), str(second), str(tmp_path / "missing.jpg"), str(tmp_path / "empty.jpg"),
            str(tmp_path / "no_images")]
    assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(out), *args]) == 0
    printed = capsys.readouterr().out
    assert "3 inputs skipped" in printed and "missing.jpg: cannot be read" in printed
    assert "no_images: a folder with no image file" in printed
    assert "empty.jpg: empty file" in printed
    assert sorted(p.name for p in out.glob("*.annotated.png")) == ["field-2.annotated.png", "field.annotated.png"]
    rows = (out / "cells.csv").read_text().strip().splitlines()[1:]
    assert {row.split(",")[0] for row in rows} == {str(first / "field.jpg"), str(second / "field.jpg")}
    assert not (out / "cells.csv.partial").exists()


def test_classify_with_nothing_readable_is_an_error_that_leaves_no_csv(tmp_path, tiny_model_path, capsys):
    (tmp_path / "smears").mkdir()
    (tmp_path / "smears" / "notes.txt").write_text("the images are on the other drive")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    for inputs, named in (([tmp_path / "smears"], "smears: a folder with no image file"),
                          ([tmp_path / "broken.png"], "broken.png: not a decodable image")):
        assert cli.main(["classify", "--model", str(tiny_model_path), "--out", str(out), *map(str, inputs)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("hv classify: error: no image classified, nothing written:") and named in err
        assert "\n" not in err
        assert list(out.iterdir()) == []  # no cells.csv that would read as "no cells found", no partial one


def test_verbose_adds_the_traceback_and_bugs_are_not_disguised(capsys, monkeypatch):
    assert cli.main(["-v", "evaluate", "--model", "missing.keras", "--out", "x"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "hv evaluate: error: model file missing.keras does not exist" in err

    def broken(args):
        raise ValueError("operands could not be broadcast together")  # a bug, not bad input

    monkeypatch.setattr(cli, "cmd_classify", broken)
    with pytest.raises(ValueError, match="broadcast"):
        cli.main(["classify"])


def test_export_for_a_new_lab_names_a_missing_folder(tmp_path, tiny_model_path, capsys):
    out = tmp_path / "export"
    assert cli.main(["export", "--model", str(tiny_model_path), "--out", str(out),
                     "--lab-data", str(tmp_path / "my_smears")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("hv export: error:") and "my_smears: not a folder" in err and "\n" not in err
    assert not out.exists()


def test_serve_gives_the_page_an_adapter_for_the_keras_model_behind_it(tmp_path, tiny_model_path, monkeypatch):
    import stream.app

    launched = {}
    monkeypatch.setattr(stream.app, "launch_app", lambda classifier, config, **kw: launched.update(kw))
    assert cli.main(["serve", "--model", str(tiny_model_path)]) == 0
    assert launched["adapter"].keras_path == tiny_model_path  # a .keras model adapts itself
    assert launched["explainer"].path == tiny_model_path
    package = tmp_path / "package" / "model.tflite"  # a package whose Keras source is nowhere here
    package.parent.mkdir()
    package.write_bytes(b"")
    monkeypatch.setattr("hv.classifier.load_classifier", lambda path: None)  # an empty file: the page is not run
    assert cli.main(["serve", "--model", str(package)]) == 0
    assert launched["adapter"] is None and launched["explainer"] is None
    assert "does not name the Keras model" in launched["explainer_note"]
