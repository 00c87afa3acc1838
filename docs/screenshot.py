"""Make docs/app.png and docs/review.png: the demo (bundled model, virtual microscope) in headless Chromium.

review.png: the Review page after a minute of the demo, one cell selected, with its heat map
(Grad-CAM of models/hv_lite0.keras, the Keras model the bundled package came from).

Usage: python docs/screenshot.py   (needs Debian's chromium and the playwright package)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright

from hv.bundled import DEFAULT_MODEL
from hv.classifier import load_classifier
from hv.cli import DEFAULT_CONFIG
from hv.config import load_config
from hv.saliency import load_explainer
from stream.app import launch_app

PORT = 7899


def main() -> None:
    explainer, note = load_explainer(DEFAULT_MODEL)
    app = launch_app(load_classifier(DEFAULT_MODEL), load_config(DEFAULT_CONFIG), port=PORT, block=False,
                     autostart=True, explainer=explainer, explainer_note=note)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                                 args=["--no-sandbox", "--disable-gpu",
                                                       "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{PORT}")
            page.locator("#live-image img").first.wait_for(timeout=60_000)
            page.wait_for_timeout(2_500)  # the first field, with its cell labelled, is still in view
            page.screenshot(path=str(Path(__file__).with_name("app.png")))
            page.wait_for_timeout(60_000)  # a minute of panning: a few cells counted
            page.get_by_role("tab", name="Review").click()
            page.locator("[id^=review-] .thumbnail-item, [id^=review-] button img").first.wait_for(timeout=30_000)
            page.locator("[id^=review-] button img").first.click()
            page.wait_for_function("document.querySelector('#review-selected').innerText.includes('Cell #')",
                                   timeout=60_000)
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(Path(__file__).with_name("review.png")))
            browser.close()
    finally:
        app.close()


if __name__ == "__main__":
    main()
