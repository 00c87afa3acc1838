"""Corrections: the count follows, and the crops form a data set hv train reads like any other source."""

import csv
import json

import numpy as np
import pytest

from hv.config import Config
from hv.labels import OUTPUT_NAMES
from stream.corrections import CSV_NAME, CorrectionStore
from stream.live import LiveSession
from stream.virtual_microscope import VirtualMicroscope
from tests.conftest import draw_field
from tests.stream.fakes import FixedClassifier
from training.data import discover


def save(store, label, track=3, session="s1"):
    crop = draw_field(np.random.default_rng(track), label=label % 4, width=64, height=64)
    return store.save(crop, label, model_label="lymphocyte", confidence=0.55, track_id=track, session=session,
                      source="virtual microscope", model_sha256="ab" * 32)


def test_a_cell_corrected_twice_keeps_only_its_latest_label(tmp_path):
    store = CorrectionStore(tmp_path)
    first = save(store, 3)
    assert first == tmp_path / "neutrophil" / "s1_3.png" and first.is_file()
    second = save(store, 0)
    assert second.is_file() and not first.exists()  # moved, not copied: one cell, one label
    rows = list(csv.DictReader((tmp_path / CSV_NAME).open()))
    assert len(rows) == 1 and rows[0]["label"] == "eosinophil" and rows[0]["model_label"] == "lymphocyte"
    assert rows[0]["file"] == "eosinophil/s1_3.png" and rows[0]["model_sha256"] == "ab" * 32
    assert len(CorrectionStore(tmp_path)) == 1  # read back from the CSV
    with pytest.raises(ValueError, match="not one of"):
        save(store, 7)


def test_the_corrections_folder_is_a_data_source_for_training(tmp_path):
    store = CorrectionStore(tmp_path)
    for track, label in enumerate((0, 1, 3, 4)):  # three of the four classes, and one "other"
        save(store, label, track=track)
    split, report = discover(tmp_path, require_all=False)  # one of several sources: a missing class warns
    assert sorted(np.bincount(split.labels, minlength=len(OUTPUT_NAMES)).tolist()) == [0, 1, 1, 1, 1]
    assert not any(p.name.endswith(".tmp") for p in tmp_path.rglob("*"))


def test_a_correction_moves_the_count_and_is_kept(tmp_path):
    store = CorrectionStore(tmp_path / "corrections")
    unsure = FixedClassifier((0.1, 0.6, 0.2, 0.1))  # every cell a lymphocyte at 60 %: under the "check" mark
    session = LiveSession(VirtualMicroscope(num_frames=30), unsure, Config(), out_dir=tmp_path / "out",
                          corrections=store)
    session._thread.join(timeout=60)
    cells = session.cells()
    assert cells and all(c.label_id == 1 for c in cells)  # the fake model: every cell a lymphocyte
    before = session.counts()
    assert session.status() == f"{len(cells)} / 100 cells, {len(cells)} to check"  # the default target
    session.correct(cells[0].track_id, 2)  # after the stream ended: applied at once
    after = session.counts()
    assert after["monocyte"] == before["monocyte"] + 1 and after["lymphocyte"] == before["lymphocyte"] - 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["counts"]["monocyte"] == 1 and summary["corrected"] == 1  # the file says it too
    left = len(cells) - 1  # the corrected cell is checked
    assert summary["to_check"] == left
    assert session.status() == f"{len(cells)} / 100 cells" + (f", {left} to check" if left else "")
    assert len(list((tmp_path / "corrections" / "monocyte").glob("*.png"))) == 1
    with pytest.raises(KeyError, match="not in this session's count"):
        session.correct(9999, 0)


def test_the_review_shows_the_clearest_view_a_label_rests_on(tmp_path):
    session = LiveSession(VirtualMicroscope(num_frames=40), FixedClassifier(), Config(), out_dir=tmp_path)
    session._thread.join(timeout=60)
    votes = session.pipeline.track_classifier
    shown = {cell.track_id: cell.view_frame for cell in session.cells()}
    kept = {track: votes.voted_frames(track) for track in shown}
    assert shown and all(frame == kept[track][0] for track, frame in shown.items())
    # The virtual microscope's stage moves: a cell's clearest view came after its first vote.
    assert any(frame > min(kept[track]) for track, frame in shown.items())
