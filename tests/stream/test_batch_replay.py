"""A folder of recordings: one output folder per video, a combined summary and CSV, failures reported."""

import csv
import json
import shutil

import pytest

from hv import cli
from hv.config import Config
from stream.batch_replay import expand_videos, output_folders, replay_videos
from stream.virtual_microscope import VirtualMicroscope
from tests.stream.test_pipeline import record


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    for seed in (1, 2):
        record(VirtualMicroscope(num_frames=12, seed=seed), folder / f"clip{seed}.avi")
    (folder / "broken.avi").write_bytes(b"not a video at all")
    return folder


def read_rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_videos_come_from_paths_globs_and_folders(videos, tmp_path):
    assert [p.name for p in expand_videos([str(videos)])] == ["broken.avi", "clip1.avi", "clip2.avi"]
    assert [p.name for p in expand_videos([str(videos / "clip*.avi"), str(videos / "clip1.avi")])] == [
        "clip1.avi", "clip2.avi"]
    same_stem = [tmp_path / "a" / "x.avi", tmp_path / "b" / "x.avi"]
    assert [f.name for f in output_folders(same_stem, tmp_path)] == ["x", "x-2"]


def test_a_folder_of_videos_with_one_broken(videos, tmp_path, tiny_model_path):
    config = Config()
    model = str(tiny_model_path)
    summary = replay_videos(expand_videos([str(videos)]), tmp_path / "out", model, config, progress=False)
    assert not summary["complete"] and [f["video"] for f in summary["failed"]] == [str(videos / "broken.avi")]
    assert "broken.avi" in summary["failed"][0]["error"]
    # Each good video's folder is exactly what a replay of that video alone writes.
    for name in ("clip1", "clip2"):
        cli.main(["replay", str(videos / f"{name}.avi"), "--model", model, "--out", str(tmp_path / "alone" / name)])
        alone = json.loads((tmp_path / "alone" / name / "summary.json").read_text())
        batch = json.loads((tmp_path / "out" / name / "summary.json").read_text())
        assert batch["counts"] == alone["counts"] and batch["frames"] == alone["frames"] == 12
        assert read_rows(tmp_path / "out" / name / "cells.csv") == read_rows(tmp_path / "alone" / name / "cells.csv")
    combined = read_rows(tmp_path / "out" / "cells.csv")
    assert {r["video"] for r in combined} == {str(videos / "clip1.avi"), str(videos / "clip2.avi")}
    for key in ("cells", "to_check"):
        assert summary[key] == sum(json.loads((tmp_path / "out" / n / "summary.json").read_text())[key]
                                   for n in ("clip1", "clip2"))
    # A rerun does only what is not done yet.
    again = replay_videos(expand_videos([str(videos)]), tmp_path / "out", model, config, progress=False)
    assert [v["skipped_as_done"] for v in again["videos"]] == [False, True, True]


def test_two_ray_workers_give_the_same_outputs(videos, tmp_path, tiny_model_path):
    pytest.importorskip("ray")
    model = str(tiny_model_path)
    good = [videos / "clip1.avi", videos / "clip2.avi", videos / "broken.avi"]
    one = replay_videos(good, tmp_path / "one", model, Config(), progress=False)
    two = replay_videos(good, tmp_path / "two", model, Config(), workers=2, progress=False)
    assert [v["cells"] for v in two["videos"]] == [v["cells"] for v in one["videos"]]
    assert two["failed"] == one["failed"] and len(two["failed"]) == 1
    for name in ("clip1", "clip2"):
        assert read_rows(tmp_path / "two" / name / "cells.csv") == read_rows(tmp_path / "one" / name / "cells.csv")
    shutil.rmtree(tmp_path / "one")


def test_the_cli_says_when_there_is_no_video(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    assert "no video files in" in capsys.readouterr().err
