"""How long a visitor waits for "Your microscope" on the web page: adapting the bundled Keras model.

Times ``MicroscopeAdapter`` (stream/microscope_adaptation.py, what the page calls) on this
machine: from classifier crops, as from a live session's counted cells (32, 300, 1000
cells), and from uploaded images (``--images`` pbc/TRAIN images, cells located first).
Each case runs ``--repeats`` times; the median is reported. Adapting loads the Keras model,
checks the cells (``check_crops``: at most 300 of them), re-estimates ``stem_bn`` and
``top_bn``, saves the model and loads it twice more (the classifier and the heat maps): all
of that is in the time, as on the page. The page's *Check* alone is timed too. TRAIN only; no
accuracy is measured here (BENCHMARKS.md, "How many unlabelled cells a lab needs").
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from hv.bundled import CHECKOUT_KERAS_MODEL
from hv.config import load_config
from stream.microscope_adaptation import MicroscopeAdapter
from training.data import discover
from training.lab_adaptation import collect_crops

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def timed(make) -> float:
    started = time.perf_counter()
    adapted = make()
    seconds = time.perf_counter() - started
    adapted.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(CHECKOUT_KERAS_MODEL))
    parser.add_argument("--data", default=str(DATA / "pbc" / "TRAIN"), help="images of the lab to adapt to")
    parser.add_argument("--cells", type=int, nargs="+", default=[32, 300, 1000])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "out" / "app_adaptation_time.json"))
    args = parser.parse_args()

    config = load_config(ROOT / "config.toml")
    adapter = MicroscopeAdapter(Path(args.model), config)
    paths = list(discover(args.data)[0].paths)
    picked = [paths[i] for i in np.random.default_rng(0).permutation(len(paths))]
    crops = collect_crops([Path(p) for p in picked], config, max(args.cells))[0]
    report = {"model": Path(args.model).name, "repeats": args.repeats, "seconds_median": {}}
    for cells in args.cells:
        runs = [timed(lambda n=cells: adapter.from_crops(crops[:n], "benchmark crops")) for _ in range(args.repeats)]
        report["seconds_median"][f"{cells} crops"] = round(statistics.median(runs), 1)
        print(f"{cells} crops: {statistics.median(runs):.1f} s (runs {', '.join(f'{r:.1f}' for r in runs)})",
              flush=True)
    for cells in args.cells:  # the page's Check: load the model, measure at most 300 of the cells
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            adapter.check_crops(crops[:cells], "benchmark crops")
            runs.append(time.perf_counter() - started)
        report["seconds_median"][f"check of {cells} crops"] = round(statistics.median(runs), 1)
        print(f"check of {cells} crops: {statistics.median(runs):.1f} s", flush=True)
    uploads = picked[: args.images]
    runs = [timed(lambda: adapter.from_images(uploads)) for _ in range(args.repeats)]
    report["seconds_median"][f"{args.images} uploaded images"] = round(statistics.median(runs), 1)
    print(f"{args.images} images: {statistics.median(runs):.1f} s (runs {', '.join(f'{r:.1f}' for r in runs)})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
