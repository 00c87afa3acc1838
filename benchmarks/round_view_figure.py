"""A picture of the stream through a round field of view: what it classifies, what it leaves as cut, what the
stage motion weighs.

The counting benchmark's slide of whole fields (``slide_count.py --tile 640 480 --field-stop D``) is streamed
with the bundled package until a frame shows both a cell the stream classifies and one the field stop may cut;
that frame's overlay is drawn beside the weight the stage-motion estimate gives each pixel
(``hv.field_of_view``: zero on the stop's shadow and its rim). Writes ``--out``
(``docs/figures/round_field_of_view.jpg``).

Usage: python benchmarks/round_view_figure.py [--field-stop 1.0] [--out docs/figures/round_field_of_view.jpg]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
from slide_count import BCCD, choose_fields, scan_scope  # benchmarks/ is on sys.path as a script

from hv.bundled import DEFAULT_MODEL
from hv.classifier import load_classifier
from hv.config import load_config
from stream.pipeline import StreamPipeline

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--field-stop", type=float, default=1.0)
    parser.add_argument("--max-frames", type=int, default=3000)
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "round_field_of_view.jpg"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    fields = choose_fields(BCCD, 100, (640, 480), 0)
    scope = scan_scope(BCCD, fields, 24, 0, tile=(640, 480), field_stop=args.field_stop)
    pipeline = StreamPipeline(load_classifier(str(DEFAULT_MODEL)), load_config(REPO / "config.toml"))
    for frame in scope:
        scene, detections = pipeline.process(frame)
        shown = detections.whole & (detections.label_id >= 0)
        if pipeline.view is not None and shown.any() and (~detections.whole).any():
            break
        if frame.index >= args.max_frames:
            raise SystemExit(f"no frame in the first {args.max_frames} shows a classified and a cut cell")
    weight = cv2.resize(pipeline.view.taper, (scene.shape[1], scene.shape[0]), interpolation=cv2.INTER_LINEAR)
    weight = cv2.applyColorMap((255 * weight).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    panels = []
    titles = (f"the stream, frame {frame.index}: a cell the stop may cut is not classified (partial)",
              "the stage motion's weight: 0 on the stop's shadow and rim")
    for image, title in zip((scene, weight), titles):
        image = image.copy()
        cv2.rectangle(image, (0, 0), (image.shape[1], 26), (255, 255, 255), -1)
        cv2.putText(image, title, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
        panels.append(image)
    figure = np.hstack([panels[0], np.full((scene.shape[0], 8, 3), 255, np.uint8), panels[1]])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, figure, [cv2.IMWRITE_JPEG_QUALITY, 90])
    print(f"wrote {args.out} (frame {frame.index}; BCCD fields, MIT licence)")


if __name__ == "__main__":
    main()
