"""A camera unlike the training labs': uneven light is evened before cells are looked for, noise is said; the run
says so."""

import numpy as np

import stream.pipeline
from hv.config import Config
from hv.illumination import evening
from stream.detections import Frame
from stream.pipeline import StreamPipeline, noisy_camera_line, uneven_light_line
from tests.hv.test_illumination import vignetted
from tests.hv.test_noise import grainy
from tests.stream.fakes import FixedClassifier
from tests.stream.test_slide_count import CELLS, FRAME_H, FRAME_W, make_slide, run, there_and_back


def test_a_slide_under_a_vignette_is_counted_and_the_run_says_the_light_was_uneven(tmp_path):
    path = there_and_back(16.0)
    dim = {i: (lambda im: vignetted(im, 0.35)) for i in range(len(path))}
    summary, rows = run(tmp_path / "dim", path, dim)
    light = summary["uneven_light"]
    assert light["of_frames"] > 0 and light["frames_evened"] >= light["of_frames"] - 1  # all but the first read
    assert light["darkest"] < 0.5
    assert summary["cells"] == CELLS and summary["regions"] == 1
    assert "were lit unevenly" in uneven_light_line(summary)
    # The same pan under even light: nothing evened, nothing said.
    summary, _ = run(tmp_path / "even", path)
    assert summary["uneven_light"]["frames_evened"] == 0 and summary["cells"] == CELLS
    assert uneven_light_line(summary) is None


def test_the_overlay_says_when_a_frame_was_evened():
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    frame = vignetted(make_slide()[:FRAME_H, :FRAME_W].copy(), 0.35)
    pipeline.process(Frame(frame, 0, 0.0))
    assert pipeline.evened and "light uneven: evened" in pipeline.status
    assert np.isfinite(pipeline.light.darkest)


def test_the_evening_is_made_once_for_each_light_read_and_by_each_channel(monkeypatch):
    made = []

    def counted(surface, frame_shape, grey_shape, colour):
        made.append((surface, colour))
        return evening(surface, frame_shape, grey_shape, colour)

    monkeypatch.setattr(stream.pipeline, "evening", counted)
    pipeline = StreamPipeline(FixedClassifier(image_size=32), Config())
    frame = vignetted(make_slide()[:FRAME_H, :FRAME_W].copy(), (0.45, 0.35, 0.3))  # lens shading: tinted corners
    for index in range(12):  # the light is read on frames 0, 5 and 10
        pipeline.process(Frame(frame, index, index / 30))
        assert pipeline.evened
    assert len(made) == 3 and all(a[0] is not b[0] for a, b in zip(made, made[1:]))
    assert all(colour is not None and colour.shape[-1] == 3 for _, colour in made)  # each channel's own light


def test_a_noisy_camera_is_said_and_a_clean_one_is_not(tmp_path):
    # The drawn slide's own fine texture (fixed to the glass, for the motion estimate) reads about 2.6 at its
    # small cells' scale, over the bundled model's bar: the test sets a bar between its two cameras.
    path = there_and_back(16.0)
    grain = {i: (lambda im, i=i: grainy(im, 16, seed=i)) for i in range(len(path))}
    summary, _ = run(tmp_path / "noisy", path, grain, noise_max=3.4)
    assert summary["camera_noise"]["level"] > 3.4
    assert noisy_camera_line(summary).startswith("camera noisy")
    summary, _ = run(tmp_path / "clean", path, noise_max=3.4)
    assert summary["camera_noise"]["level"] < 3.4 and noisy_camera_line(summary) is None
