"""The web app in a real browser: headless Chromium driven by Playwright."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from hv.config import Config
from hv.labels import OUTPUT_NAMES
from tests.conftest import SAMPLES
from tests.stream.fakes import FixedClassifier
from tests.stream.test_pipeline import record

sync_api = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corrections_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("corrections")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, corrections_dir):
    from hv.config import ModelConfig, ServeConfig
    from hv.model import build_model
    from hv.saliency import GradCam
    from stream.app import launch_app
    from stream.microscope_adaptation import MicroscopeAdapter

    keras_path = tmp_path_factory.mktemp("explain") / "tiny.keras"  # random weights: the heat map's plumbing
    build_model(ModelConfig(weights="none", image_size=32)).save(keras_path)
    config = Config(serve=ServeConfig(corrections_dir=str(corrections_dir)))
    port = free_port()
    app = launch_app(FixedClassifier(image_size=32), config, port=port, block=False, explainer=GradCam(keras_path),
                     adapter=MicroscopeAdapter(keras_path, config, min_cells=2))
    yield f"http://127.0.0.1:{port}"
    app.close()


@pytest.fixture(scope="module")
def page(app_url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run",
                  # A synthetic camera for the browser-webcam test, allowed without a prompt.
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"])
        context = browser.new_context(viewport={"width": 1280, "height": 1000}, permissions=["camera"])
        page = context.new_page()
        page.goto(app_url)
        yield page
        browser.close()


def test_live_stream_frames_reach_the_page(page, tmp_path, corrections_dir):
    page.get_by_role("tab", name="Live").click()
    page.get_by_role("button", name="Start").click()
    page.locator("#live-image img").first.wait_for(timeout=30_000)
    page.wait_for_function("document.querySelector('#live-status').innerText.includes('Running')", timeout=10_000)
    first = page.locator("#live-image img").first.get_attribute("src")
    page.wait_for_timeout(1500)
    assert page.locator("#live-image img").first.get_attribute("src") != first  # frames keep arriving
    # The fake classifier calls every cell a lymphocyte: the count table's lymphocyte row rises above 0.
    deadline = time.monotonic() + 30
    while not re.search(r"lymphocyte\s+[1-9]", page.locator("#live-counts").inner_text()):
        assert time.monotonic() < deadline, page.locator("#live-counts").inner_text()
        page.wait_for_timeout(250)
    page.screenshot(path=str(Path(os.environ.get("HV_SCREENSHOT_DIR", tmp_path)) / "app.png"))
    assert page.locator("#live-plot canvas, #live-plot svg").count() >= 1  # the bar chart is drawn
    page.get_by_role("tab", name="Review").click()
    # No Refresh button: the page fills the galleries by itself.
    thumb = page.locator("#review-lymphocyte img").first
    thumb.wait_for(timeout=15_000)
    assert page.locator("#review-eosinophil img").count() == 0
    # A fixed-size thumbnail (crop + caption drawn under it), not one crop stretched over the row.
    gallery_width = page.locator("#review-lymphocyte").bounding_box()["width"]
    assert thumb.bounding_box()["width"] <= gallery_width / 4
    assert thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [112, 146]
    thumb.click()
    page.wait_for_function("document.querySelector('#review-selected').innerText.includes('Heat map')",
                           timeout=15_000)
    page.screenshot(path=str(Path(os.environ.get("HV_SCREENSHOT_DIR", tmp_path)) / "review.png"))
    page.locator("#review-label").get_by_text("neutrophil").click()
    page.locator("#review-apply").click()
    page.wait_for_function("document.querySelector('#review-selected').innerText.includes('corrected by you')",
                           timeout=15_000)
    page.get_by_role("tab", name="Live").click()
    # The count follows the correction, and the crop lands in the corrections data set.
    deadline = time.monotonic() + 15
    while not re.search(r"neutrophil\s+1\b", page.locator("#live-counts").inner_text()):
        assert time.monotonic() < deadline, page.locator("#live-counts").inner_text()
        page.wait_for_timeout(250)
    assert len(list((corrections_dir / "neutrophil").glob("*.png"))) == 1
    assert "neutrophil" in (corrections_dir / "corrections.csv").read_text()
    page.get_by_role("button", name="Stop").click()
    page.wait_for_function("document.querySelector('#live-status').innerText.includes('Stopped')")


def _status_says(page, element_id: str, text: str, timeout_ms: int = 30_000) -> None:
    page.wait_for_function(f"document.querySelector('#{element_id}').innerText.includes({text!r})",
                           timeout=timeout_ms)


def _save_corrections(folder: Path, counts: dict[str, int]) -> None:
    """Crops corrected as the Review tab saves them, made here (32 px, the served tiny model's size)."""
    from stream.corrections import CorrectionStore
    from tests.conftest import draw_field

    store, rng = CorrectionStore(folder), np.random.default_rng(0)
    for name, count in counts.items():
        for _ in range(count):
            store.save(draw_field(rng, OUTPUT_NAMES.index(name), width=32, height=32), OUTPUT_NAMES.index(name),
                       model_label="lymphocyte", confidence=0.4, track_id=1000 + len(store), session="test",
                       source="test", model_sha256=None)


def test_the_model_adapted_to_your_microscope_counts_the_next_session(page, corrections_dir):
    page.get_by_role("tab", name="Your microscope").click()
    _status_says(page, "adapt-status", "Classifying with the served model")
    page.locator("#adapt-live").click()  # no live session yet: the page says what to do
    page.get_by_text("no live session yet").first.wait_for(timeout=15_000)
    page.get_by_role("tab", name="Live").click()
    page.get_by_role("button", name="Start").click()
    deadline = time.monotonic() + 30
    while not re.search(r"lymphocyte\s+([2-9]|\d\d)", page.locator("#live-counts").inner_text()):
        assert time.monotonic() < deadline, page.locator("#live-counts").inner_text()
        page.wait_for_timeout(250)
    page.get_by_role("tab", name="Your microscope").click()
    page.locator("#check-live").click()  # first: do these cells need it? (the tiny model's answer either way)
    _status_says(page, "adapt-check", "cells: their features lie", 60_000)
    checked = page.locator("#adapt-check").inner_text()
    assert re.search(r"(Adapting is advised|No need to adapt|Adapting may help or cost a little)\. \d+ cells: "
                     r"their features lie \d+\.\d\d", checked), checked
    _status_says(page, "adapt-status", "Classifying with the served model")  # a check changes nothing
    page.locator("#adapt-live").click()
    _status_says(page, "adapt-status", "adapted to your microscope", 60_000)
    status = page.locator("#adapt-status").inner_text()
    assert re.search(r"on \d+ cells from live session \w+ \(virtual microscope", status), status
    assert page.locator("#adapt-download a").count() == 2  # the model and its report, for download
    # Taught the Review tab's corrections too: too few first (the page says so), then two classes' worth.
    page.locator("#adapt-corrections input[type=checkbox]").check()
    page.locator("#adapt-live").click()
    page.get_by_text(re.compile("no cell has been corrected on the Review tab yet|labelled cells of 1 classes")
                     ).first.wait_for(timeout=30_000)
    _save_corrections(corrections_dir, {"eosinophil": 4, "monocyte": 4})
    page.locator("#adapt-live").click()
    _status_says(page, "adapt-status", "cells corrected on the Review tab", 60_000)
    status = page.locator("#adapt-status").inner_text()
    assert re.search(r"head retrained on the \d+ cells corrected on the Review tab \(4 eosinophil, 4 monocyte",
                     status), status
    page.locator("#adapt-corrections input[type=checkbox]").uncheck()
    # The running count keeps the model it started with; the next Start counts with the adapted one.
    page.get_by_role("tab", name="Live").click()
    _status_says(page, "live-status", "model FixedClassifier")
    page.get_by_role("button", name="Start").click()
    _status_says(page, "live-status", "model adapted-")
    page.get_by_role("button", name="Stop").click()
    _status_says(page, "live-status", "Stopped")
    page.get_by_role("tab", name="Your microscope").click()
    page.locator("#adapt-back").click()
    _status_says(page, "adapt-status", "Classifying with the served model")


def test_browser_webcam_frames_run_through_the_pipeline(page):
    page.get_by_role("tab", name="Live").click()
    page.get_by_text("Browser webcam").click()
    page.locator("#webcam").get_by_text("Click to Access Webcam").click()
    page.locator("#webcam button", has_text="Record").click()
    page.locator("#webcam-out img").first.wait_for(timeout=20_000)  # annotated frames come back


def test_files_outside_the_app_are_not_served(app_url):
    for path in ("/gradio_api/file=/etc/passwd", "/file=/etc/passwd", f"/gradio_api/file={Path(__file__)}"):
        try:
            status = urllib.request.urlopen(app_url + path).status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status in (403, 404), path


def test_wrong_upload_type_gets_a_clear_message(page, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video")
    page.get_by_role("tab", name="Replay").click()
    page.locator("#replay-upload input[type=file]").set_input_files(str(bad))
    page.locator("#replay-run").click()
    # The page refuses it before upload; the server would too ("... is not accepted").
    page.get_by_text(re.compile("Invalid file type: notes.txt|is not accepted")).first.wait_for(timeout=15_000)
    clear = page.locator("#replay-upload").get_by_label("Clear")
    if clear.count():
        clear.first.click()


def test_replay_upload_returns_a_csv_with_rows(page, app_url, tmp_path):
    from stream.virtual_microscope import VirtualMicroscope

    video = record(VirtualMicroscope(num_frames=20), tmp_path / "clip.avi")
    page.get_by_role("tab", name="Replay").click()
    page.locator("#replay-upload input[type=file]").set_input_files(str(video))
    page.locator("#replay-run").click()
    link = page.locator("#replay-csv a").first
    link.wait_for(timeout=60_000)
    href = link.get_attribute("href")
    url = href if href.startswith("http") else app_url + href
    rows = list(csv.DictReader(io.StringIO(urllib.request.urlopen(url).read().decode())))
    assert len(rows) >= 15
    # Whole cells carry the fake model's label; a cell cut by the frame edge is never classified.
    assert {r["label"] for r in rows if r["whole"] == "1"} == {"lymphocyte"}
    assert all(r["whole"] == "0" for r in rows if r["label"] == "partial")


def test_image_upload_shows_labels(page):
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-upload input[type=file]").set_input_files(str(SAMPLES / "BloodImage_00043.jpg"))
    page.locator("#image-run").click()
    page.wait_for_function("document.querySelector('#image-table').innerText.includes('lymphocyte')",
                           timeout=30_000)
    assert page.locator("#image-table").inner_text().count("lymphocyte") == 2  # two cells in this field


def test_image_upload_says_when_cells_are_smaller_than_the_model_learnt_from(page, tmp_path):
    """A field at a quarter of BCCD's magnification is still classified, and the page says its labels are less sure."""
    import cv2

    small = tmp_path / "low_magnification.png"
    field = cv2.imread(str(SAMPLES / "BloodImage_00021.jpg"))
    cv2.imwrite(str(small), cv2.resize(field, None, fx=1 / 4, fy=1 / 4, interpolation=cv2.INTER_AREA))
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-upload input[type=file]").set_input_files(str(small))
    page.locator("#image-run").click()
    page.wait_for_function("document.body.innerText.includes('labels less sure')", timeout=30_000)
    assert "fewer than the 60 px the model learnt from" in page.locator("body").inner_text()
    # Classified all the same: one cell (the field before held two).
    page.wait_for_function("document.querySelector('#image-table').innerText.split('lymphocyte').length === 2",
                           timeout=10_000)


def test_image_upload_says_when_the_image_was_saved_too_compressed(page, tmp_path):
    """A field saved at JPEG quality 12: classified, and the page says its labels are less sure and what to do."""
    import cv2

    blocky = tmp_path / "blocky.jpg"
    cv2.imwrite(str(blocky), cv2.imread(str(SAMPLES / "BloodImage_00021.jpg")), [cv2.IMWRITE_JPEG_QUALITY, 12])
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-upload input[type=file]").set_input_files(str(blocky))
    page.locator("#image-run").click()
    page.wait_for_function("document.body.innerText.includes('Saved as JPEG at about quality 12')", timeout=30_000)
    assert "save at 30 or more, or as PNG" in page.locator("body").inner_text()
