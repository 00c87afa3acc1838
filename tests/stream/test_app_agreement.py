"""The web page and `hv classify` give the same answers for the same file, with a model whose answers vary.

A model that says the same for every input agrees with anything; the session's learned model
does not. The page is called through its API (gradio_client), without a browser.
"""

import csv

import cv2
import numpy as np
import pytest

from hv import cli
from hv.classifier import KerasClassifier
from hv.config import load_config
from tests.conftest import draw_field

gradio_client = pytest.importorskip("gradio_client")


def test_image_tab_and_hv_classify_agree(learned_model, tmp_path):
    from stream.app import launch_app
    from tests.stream.test_app import free_port

    model_path, _, _ = learned_model
    rng = np.random.default_rng(21)
    fields = []
    for label in (0, 3):  # two fields, two cells each, of different classes: the answers differ
        path = tmp_path / f"field_{label}.png"
        cv2.imwrite(str(path), cv2.cvtColor(draw_field(rng, label, cells=2), cv2.COLOR_RGB2BGR))
        fields.append(path)
    assert cli.main(["classify", *map(str, fields), "--model", str(model_path), "--out", str(tmp_path / "out")]) == 0
    with (tmp_path / "out" / "cells.csv").open() as f:
        by_cli = [(r["label"], float(r["confidence"]), r["view"]) for r in csv.DictReader(f)]
    assert len({label for label, *_ in by_cli}) > 1 and len(by_cli) == 4

    port = free_port()
    app = launch_app(KerasClassifier(model_path), load_config(cli.DEFAULT_CONFIG), port=port, block=False)
    try:
        client = gradio_client.Client(f"http://127.0.0.1:{port}", verbose=False)
        by_page = []
        for path in fields:
            _, _, table = client.predict(gradio_client.handle_file(str(path)), "field", api_name="/classify_upload")
            headers, rows = table["headers"], table["data"]
            by_page += [(row[headers.index("label")], float(row[headers.index("confidence")]),
                         row[headers.index("view")]) for row in rows]
    finally:
        app.close()
    assert [(label, view) for label, _, view in by_page] == [(label, view) for label, _, view in by_cli]
    np.testing.assert_allclose([c for _, c, _ in by_page], [c for _, c, _ in by_cli], atol=2e-3)
