import csv
import json

import cv2
import numpy as np
import pytest

from hv.config import Config
from hv.preprocess import read_image_rgb
from hv.stain import AS_IS, LAMP, STAIN
from stream.detections import Detections, Frame
from stream.pipeline import StreamPipeline, run_stream, small_cells_line
from stream.sinks import CSV_COLUMNS
from stream.sources import ImageFolderSource, VideoFileSource
from stream.virtual_microscope import VirtualMicroscope
from tests.conftest import SAMPLES, draw_field, replace
from tests.stain_shifts import restained
from tests.stream.fakes import FixedClassifier


def record(scope: VirtualMicroscope, path):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, scope.frame_size)
    for frame in scope:
        writer.write(frame.image_bgr)
    writer.release()
    return path


def test_replay_of_a_generated_video_end_to_end(tmp_path):
    video = record(VirtualMicroscope(num_frames=40), tmp_path / "clip.avi")
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    with VideoFileSource(video) as source:
        summary = run_stream(source, pipeline, tmp_path / "out", video=True, progress=False)
    with (tmp_path / "out" / "cells.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert {r["label"] for r in rows} == {"lymphocyte"}
    assert len({r["frame"] for r in rows}) >= 35  # a cell in (nearly) every frame
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved == summary and saved["complete"] and saved["frames"] == 40
    assert saved["counts"]["lymphocyte"] == saved["cells"] >= 1
    assert saved["cells"] <= 4  # tracked cells are counted once, not once per frame
    assert (tmp_path / "out" / "annotated.webm").stat().st_size > 10_000


def test_interrupt_still_writes_everything_so_far(tmp_path):
    class Interrupting(VirtualMicroscope):
        def __iter__(self):
            for frame in super().__iter__():
                if frame.index == 5:
                    raise KeyboardInterrupt
                yield frame

    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    with pytest.raises(KeyboardInterrupt):
        run_stream(Interrupting(num_frames=20), pipeline, tmp_path, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["frames"] == 5 and not summary["complete"] and summary["error"] == "interrupted"
    assert len((tmp_path / "cells.csv").read_text().splitlines()) > 1


@pytest.mark.parametrize(("probs", "to_check"), [((0.05, 0.9, 0.03, 0.02), False), ((0.1, 0.6, 0.2, 0.1), True)])
def test_a_complete_differential_says_how_many_cells_to_check(tmp_path, probs, to_check):
    config = replace(Config(), stream=replace(Config().stream, target_count=1))
    pipeline = StreamPipeline(FixedClassifier(probs, image_size=32), config)
    summary = run_stream(VirtualMicroscope(num_frames=20), pipeline, tmp_path, progress=False)
    assert summary["differential_complete"] and summary["cells"] >= 1
    assert summary["stain_correction"] == "auto"  # how the crops were made travels with the counts
    # Unsure calls (60 %) are all under the review page's "check" mark; sure ones (90 %) none.
    assert summary["to_check"] == (summary["cells"] if to_check else 0)
    assert pipeline.status == (f"differential complete: 1 cell, {summary['cells']} to check" if to_check
                               else "differential complete: 1 cell")


def test_another_objective_restarts_the_cell_scale():
    """A zoom loses the stage motion; the scale then follows the new view instead of its old median."""
    config = replace(Config(), stream=replace(Config().stream, scale_every=1))
    pipeline = StreamPipeline(FixedClassifier(image_size=32), config)
    low = draw_field(np.random.default_rng(0), 1, width=320, height=240, cell_frac=0.28)
    high = draw_field(np.random.default_rng(1), 1, width=320, height=240, cell_frac=0.42)
    for index in range(8):  # the stage creeps 2 px a frame
        moved = cv2.cvtColor(np.roll(low, 2 * index, axis=1), cv2.COLOR_RGB2BGR)
        pipeline.process(Frame(moved, index, index / 30, 0.0))
    assert pipeline.diameter_px == pytest.approx(0.28 * 320, rel=0.1)
    pipeline.process(Frame(cv2.cvtColor(high, cv2.COLOR_RGB2BGR), 8, 8 / 30, 0.0))
    assert pipeline.report.ok and pipeline.position.new_region
    assert pipeline.diameter_px == pytest.approx(0.42 * 320, rel=0.1)  # 8 old measurements would outvote it


@pytest.mark.parametrize(("cell_frac", "small"), [(0.28, False), (0.2, True)],
                         ids=["the training magnification", "a lower magnification"])
def test_cells_smaller_than_the_model_learnt_from_are_said_so(cell_frac, small):
    """90 px cells (blood-cells/' size) pass; 64 px ones are still counted, and the stream says labels are less sure."""
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    field = draw_field(np.random.default_rng(0), 1, width=320, height=240, cell_frac=cell_frac)
    for index in range(3):
        moved = cv2.cvtColor(np.roll(field, 2 * index, axis=1), cv2.COLOR_RGB2BGR)
        pipeline.process(Frame(moved, index, index / 30, 0.0))
    summary = pipeline.summary()
    assert summary["cell_diameter_px"] == pytest.approx(cell_frac * 320, rel=0.1)
    assert summary["small_cells"] == {"frames": 3 if small else 0, "of_frames": 3, "min_cell_diameter_px": 75.0}
    assert ("cells small (" in pipeline.status) == small
    line = small_cells_line(summary)
    if small:
        assert line.startswith("3 of 3 frames: cells about ") and "use a higher magnification" in line
    else:
        assert line is None
    # 0 turns the note off (a model trained on smaller cells than the bundled one).
    off = replace(Config(), locator=replace(Config().locator, min_cell_diameter_px=0.0))
    quiet = StreamPipeline(FixedClassifier(image_size=32), off)
    quiet.process(Frame(cv2.cvtColor(field, cv2.COLOR_RGB2BGR), 0, 0.0, 0.0))
    assert quiet.summary()["small_cells"]["frames"] == 0 and "cells small" not in quiet.status


@pytest.mark.parametrize("brown", [False, True], ids=["training stain", "brown-red stain"])
def test_cells_counted_from_recoloured_crops_are_reported(tmp_path, brown):
    field = read_image_rgb(str(SAMPLES / "BloodImage_00043.jpg"))  # one whole cell, one at the frame edge
    image = restained(field) if brown else field
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"frame_{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    with ImageFolderSource(tmp_path / "frame_*.png") as source:
        summary = run_stream(source, pipeline, tmp_path / "out", progress=False)
    with (tmp_path / "out" / "cells.csv").open() as f:
        rows = list(csv.DictReader(f))
    counted = [r for r in rows if r["label"] == "lymphocyte"]
    assert summary["cells"] == 1 and len(counted) == 3
    assert {r["recoloured"] for r in counted} == {STAIN if brown else AS_IS}
    assert summary["recoloured"] == {LAMP: 0, STAIN: 1 if brown else 0}


def test_the_status_line_says_so_when_most_counted_cells_were_recoloured():
    pipeline = StreamPipeline(FixedClassifier(), Config())

    def count(tracks, recoloured):
        n = len(tracks)
        pipeline.counter.update(Detections(np.zeros((n, 4)), np.full(n, 0.9), np.ones(n, int), tracks,
                                           recoloured=recoloured))

    count([1, 2, 3], [STAIN] * 3)
    assert "colours adjusted" not in pipeline.status  # too few cells to say anything about the microscope
    count([4, 5, 6], [AS_IS] * 3)
    assert pipeline.status.endswith("; another stain: colours adjusted")  # 3 of 6
    count([7], [AS_IS])
    assert "colours adjusted" not in pipeline.status  # 3 of 7
    count([1, 2, 3, 8], [LAMP] * 4)  # a later vote recolours a counted cell differently: its latest counts
    assert pipeline.counter.recoloured() == {LAMP: 4, STAIN: 0}
    assert pipeline.status.endswith("; another lamp: colours adjusted")
