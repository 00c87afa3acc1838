"""A corpus of bad inputs, and every command run over it in a subprocess under a timeout.

Each run must end with exit 0 and the bad files skipped and reported, or with a one-line
error that names the file: never a traceback, never a hang, and the good inputs' rows all there.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from hv.labels import CLASS_NAMES
from tests.conftest import draw_field

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240


def bgr(label: int, seed: int, width: int = 160, height: int = 120) -> np.ndarray:
    return cv2.cvtColor(draw_field(np.random.default_rng(seed), label, width, height), cv2.COLOR_RGB2BGR)


def build_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(good images, bad images) of every kind the issue lists, in ``folder`` and a nested folder."""
    folder.mkdir(parents=True)
    good = []
    for i, name in enumerate(["plain.png", "grey.png", "alpha.png", "deep16.png", "ünïcødé name.png",
                              "nested/inner.jpg"]):
        # grey.png is refused with its reason (no colour: the stains' colours tell the classes apart), so it
        # goes with the bad files below.
        path = folder / name
        path.parent.mkdir(exist_ok=True)
        image = bgr(i % 4, i)
        if name == "grey.png":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif name == "alpha.png":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
        elif name == "deep16.png":
            image = image.astype(np.uint16) * 257
        ok, data = cv2.imencode(path.suffix, image)
        path.write_bytes(data.tobytes())  # imencode: unicode names work on every platform
        if name != "grey.png":
            good.append(path)
    big = folder / "huge_8000x6000.jpg"
    cv2.imwrite(str(big), cv2.resize(bgr(2, 9), (8000, 6000), interpolation=cv2.INTER_NEAREST))
    good.append(big)
    bad = {"zero.png": b"", "text_as.jpg": b"this is not a JPEG\n"}
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    png = cv2.imencode(".png", bgr(1, 3))[1].tobytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 3])
    for name, shape in (("one_by_one.png", (1, 1)), ("one_by_n.png", (1, 90)), ("n_by_one.png", (90, 1))):
        cv2.imwrite(str(folder / name), np.full((*shape, 3), 200, np.uint8))
    return good, sorted(p for p in folder.iterdir() if p.is_file() and p not in good)


def build_class_folders(root: Path) -> Path:
    """A training/evaluation data set with good images, bad files, an unknown and an empty class folder."""
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(folder / f"_{i}_{i}.png"), bgr(label, 10 * label + i))
        (folder / "zero.png").write_bytes(b"")
        (folder / "notes.jpg").write_bytes(b"text, not an image")
        cv2.imwrite(str(folder / "tiny.png"), np.zeros((1, 1, 3), np.uint8))
    (root / "mystery_cells").mkdir()
    cv2.imwrite(str(root / "mystery_cells" / "x.png"), bgr(0, 99))
    (root / "basophil").mkdir()  # an "other" class folder with no image at all
    return root


def build_videos(folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    (folder / "zero.avi").write_bytes(b"")
    (folder / "text.mp4").write_text("not a video")
    writer = cv2.VideoWriter(str(folder / "good.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(8):
        writer.write(bgr(i % 4, i))
    writer.release()
    data = (folder / "good.avi").read_bytes()
    (folder / "truncated.avi").write_bytes(data[: len(data) // 2])
    for name, frame in (("grey.avi", None), ("blank.avi", np.zeros((120, 160, 3), np.uint8)),
                        ("tiny.avi", np.full((16, 16, 3), 128, np.uint8))):
        size = (frame.shape[1], frame.shape[0]) if frame is not None else (160, 120)
        writer = cv2.VideoWriter(str(folder / name), cv2.VideoWriter_fourcc(*"MJPG"), 10, size, frame is not None)
        for i in range(5):
            writer.write(frame if frame is not None else cv2.cvtColor(bgr(1, i), cv2.COLOR_BGR2GRAY))
        writer.release()
    return sorted(folder.iterdir())


def hv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``hv ARGS`` in a fresh process, killed after TIMEOUT_S (a hang fails the test)."""
    return subprocess.run([sys.executable, "-m", "hv.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)})


def assert_no_traceback(result: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr[-3000:]


def rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    good, bad = build_images(root / "images")
    return {"root": root, "good": good, "bad": bad, "data": build_class_folders(root / "data"),
            "videos": build_videos(root / "videos")}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from hv.config import ModelConfig
    from hv.model import build_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_model(ModelConfig(weights="none", image_size=32)).save(path)
    return path


def test_classify_over_the_image_corpus(corpus, model, tmp_path):
    result = hv("classify", str(corpus["root"] / "images"), "--model", str(model), "--out", str(tmp_path / "out"),
                cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert_no_traceback(result)
    for path in corpus["bad"]:
        assert path.name in result.stdout + result.stderr, path.name  # each bad file named, with its reason
    written = {Path(row["image"]).name for row in rows(tmp_path / "out" / "cells.csv")}
    # No good image lost: each has its cells' rows; the grey one is named with its reason, not guessed at.
    assert {p.name for p in corpus["good"]} <= written
    assert "grey.png: no colour" in result.stdout + result.stderr and "grey.png" not in written


def test_train_and_evaluate_over_a_data_set_with_bad_files(corpus, model, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(f'[model]\nweights = "none"\nimage_size = 32\n[train]\nbatch_size = 4\nout_dir = "{tmp_path}"\n'
                      '[train.phase1]\nepochs = 1\nlearning_rate = 0.001\n[train.phase2]\nepochs = 0\n'
                      'learning_rate = 0.0001\nunfreeze_layers = 10\n[data]\nval_fraction = 0.0\n'
                      f'test_dirs = ["{corpus["data"]}"]\n')
    trained = hv("--config", str(config), "train", "--data", str(corpus["data"]), "--name", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert_no_traceback(trained)
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())[0]
    skipped = json.dumps(report)
    for name in ("zero.png", "notes.jpg", "tiny.png", "mystery_cells"):
        assert name in skipped, name
    evaluated = hv("--config", str(config), "evaluate", "--model", str(model), "--data", str(corpus["data"]),
                   "--out", str(tmp_path / "eval"), cwd=tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert_no_traceback(evaluated)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    # Every good image scored: the four classes', and the unknown folder's as "other".
    assert metrics["n_images"] == 3 * len(CLASS_NAMES) and metrics["other"]["n"] == 1


def test_replay_over_the_video_corpus(corpus, model, tmp_path):
    result = hv("replay", str(corpus["root"] / "videos"), "--model", str(model), "--out", str(tmp_path / "out"),
                cwd=tmp_path)
    assert result.returncode == 1  # some videos failed: said, not hidden
    assert_no_traceback(result)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    failed = {Path(f["video"]).name for f in summary["failed"]}
    assert {"zero.avi", "text.mp4"} <= failed and "good.avi" not in failed
    assert all(f["error"] for f in summary["failed"])
    good = json.loads((tmp_path / "out" / "good" / "summary.json").read_text())
    assert good["complete"] and good["frames"] == 8


def test_replay_of_a_monochrome_recording_says_why_nothing_was_counted(corpus, model, tmp_path):
    grey = next(p for p in corpus["videos"] if p.name == "grey.avi")
    result = hv("replay", str(grey), "--model", str(model), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hv replay: 5 of 5 frames not classified: no colour;" in result.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["cells"] == 0


@pytest.mark.parametrize("name, content, message", [
    ("broken.toml", "[stream\nmin_confidence = ", "broken.toml"),
    ("typed.toml", '[stream]\nmin_confidence = "high"\n', "stream.min_confidence"),
    ("unknown.toml", "[stream]\nspeed = 3\n", "unknown key 'speed' in [stream]"),
])
def test_bad_configs_are_one_line_errors(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    result = hv("--config", str(tmp_path / name), "classify", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert_no_traceback(result)
    ours = [line for line in result.stderr.splitlines() if line.startswith("hv ")]  # not TensorFlow's start-up lines
    assert len(ours) == 1 and ours[0].startswith("hv classify: error:") and message in ours[0]


@pytest.mark.parametrize("suffix", [".keras", ".tflite"])
def test_garbage_models_are_one_line_errors(tmp_path, suffix, corpus):
    garbage = tmp_path / f"garbage{suffix}"
    garbage.write_bytes(b"\x00\x01 this is no model")
    for command in (["classify", str(corpus["good"][0])], ["replay", str(corpus["videos"][0])]):
        result = hv(*command, "--model", str(garbage), "--out", str(tmp_path / "out"), cwd=tmp_path)
        assert result.returncode == 1 and f"garbage{suffix}" in result.stderr, result.stderr[-2000:]
        assert_no_traceback(result)
