"""An installed package works from any folder: a built wheel, installed apart, classifies the samples."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_a_built_wheel_runs_hv_classify_from_another_folder(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, timeout=300)
    wheel = next(wheels.glob("hematovision-*.whl"))
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    assert (site / "hv" / "bundled" / "hv_lite0_int8" / "model.tflite").is_file()
    assert len(list((site / "hv" / "bundled" / "fields").glob("*.jpg"))) == 5
    # Far from the checkout, with the wheel's copy first on the path: no config.toml, no repo files.
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    script = ("import hv, sys; from hv.cli import main; "
              f"assert hv.__file__.startswith({str(site)!r}), hv.__file__; "
              "sys.exit(main(['classify', '--out', 'out']))")
    result = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = (work / "out" / "cells.csv").read_text().strip().splitlines()
    assert rows[0] == "image,x,y,w,h,label,confidence,view,cell_diameter_px"
    assert len(rows) - 1 == 6  # six cells in the five fields
