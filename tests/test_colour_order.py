"""RGB all the way from a file or a camera frame to the model: a swap anywhere flips the answer.

The field is a purple white cell (the locator finds it by its blue nucleus) on a strongly
red background; the probe classifier answers "eosinophil" when the crop it gets is redder
than it is blue and "lymphocyte" otherwise. A BGR image handed on as RGB (or the reverse)
makes the background blue, and the answer "lymphocyte", or hides the nucleus from the
locator and gives no answer at all. The stain correction is off: it would give this strongly
tinted field the training labs' plasma, and the probe must see the pixels as read.
"""

import csv

import cv2
import numpy as np

from hv.config import Config, override
from hv.field_images import classify_fields
from hv.preprocess import field_to_model_input, read_image_rgb
from stream.detections import Frame
from stream.pipeline import StreamPipeline
from stream.sources import ImageFolderSource, VideoFileSource
from training.pipeline import FieldLoader

SIZE = 32


def probe_config() -> Config:
    """The default config with the crops left as the camera gave them (``locator.stain_correction = "off"``)."""
    return override(Config(), **{"locator.stain_correction": "off"})


class ColourProbe:
    image_size = SIZE

    def predict(self, crops_rgb):
        crops = np.asarray(crops_rgb, np.float32)
        redder = crops[..., 0].mean(axis=(1, 2)) > crops[..., 2].mean(axis=(1, 2))
        out = np.zeros((len(crops), 5), np.float32)
        out[np.arange(len(crops)), np.where(redder, 0, 1)] = 1.0
        return out


def red_field_rgb() -> np.ndarray:
    """320x240 RGB: a red-tinted field with red cells and one purple white cell in the middle."""
    image = np.full((240, 320, 3), (236, 170, 160), np.uint8)
    for x in range(20, 320, 40):
        for y in (20, 220):
            cv2.circle(image, (x, y), 17, (200, 110, 110), -1)
    cv2.circle(image, (160, 120), 45, (200, 170, 230), -1)  # cytoplasm
    cv2.circle(image, (160, 120), 27, (110, 60, 200), -1)  # nucleus
    return image


def _write_rgb(path, image_rgb):
    cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))  # OpenCV writes BGR
    return path


def test_file_to_crop_keeps_rgb(tmp_path):
    path = _write_rgb(tmp_path / "field.png", red_field_rgb())
    image = read_image_rgb(str(path))
    assert image[5, 5].tolist() == [236, 170, 160]  # red first
    config = probe_config()
    crop, located = field_to_model_input(image, config)
    assert located and crop[..., 0].mean() > crop[..., 2].mean()
    loader_crop = FieldLoader(config)(str(path).encode())  # what training feeds the model
    assert np.array_equal(loader_crop, crop)


def test_hv_classify_gives_the_red_answer(tmp_path):
    path = _write_rgb(tmp_path / "field.png", red_field_rgb())
    classify_fields(ColourProbe(), [path], probe_config(), tmp_path / "out")
    with (tmp_path / "out" / "cells.csv").open() as f:
        assert [row["label"] for row in csv.DictReader(f)] == ["eosinophil"]


def test_stream_sources_and_pipeline_give_the_red_answer(tmp_path):
    field_bgr = cv2.cvtColor(red_field_rgb(), cv2.COLOR_RGB2BGR)
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(3):
        writer.write(field_bgr)
    writer.release()
    folder = tmp_path / "frames"
    folder.mkdir()
    _write_rgb(folder / "f0.png", red_field_rgb())
    camera_frame = Frame(field_bgr, 0, 0.0, 0.0)  # what a camera source yields: BGR, as OpenCV reads
    for frames in (list(VideoFileSource(video)), list(ImageFolderSource(folder)), [camera_frame]):
        pipeline = StreamPipeline(ColourProbe(), probe_config())
        labels = [int(label) for frame in frames for label in pipeline.process(frame)[1].label_id]
        assert labels and set(labels) == {0}, labels
