"""The app package: one folder an Android or iOS app can ship as is.

``model.tflite``, ``labels.txt`` (output order), ``model.json`` (input contract,
quantisation, crop recipe, metrics, checksum) and ``MODEL_CARD.md``. It is assembled in a
temporary folder and moved into place at the end, so a failed export never leaves a
folder that looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from ai_edge_litert.interpreter import Interpreter

from hv.classifier import file_sha256
from hv.config import Config
from hv.field_of_view import DARK_FRAC, MIN_STOP_SHARE
from hv.illumination import DIM_BELOW, GRID, LIGHT_PERCENTILE
from hv.labels import CLASS_NAMES, OUTPUT_NAMES
from hv.locator import ONE_FIELD_SPREAD
from hv.scale import CELL_OVER_NUCLEUS, MIN_NUCLEUS_SHARE
from hv.stain import (
    LAMP_BLUE_MINUS_RED,
    PINK_GREEN_OVER_BLUE,
    PLASMA_PERCENTILE,
    RED_PERCENTILES,
    REFERENCE_PLASMA_OD,
    REFERENCE_RED_OD,
)

PACKAGE_FILES = ("model.tflite", "labels.txt", "model.json", "MODEL_CARD.md")


class PackageError(ValueError):
    """The package's parts disagree (for example labels vs outputs)."""


def tensor_spec(model_path: Path) -> tuple[dict, dict]:
    """Input and output tensor descriptions (shape, dtype, quantisation) read from the model."""
    interpreter = Interpreter(model_path=str(model_path))
    specs = []
    for detail in (interpreter.get_input_details()[0], interpreter.get_output_details()[0]):
        scale, zero_point = detail["quantization"]
        specs.append(
            {
                "shape": [int(v) for v in detail["shape"]],
                "dtype": detail["dtype"].__name__,
                "quantization": {"scale": float(scale), "zero_point": int(zero_point)} if scale else None,
            }
        )
    return specs[0], specs[1]


def crop_description(config: Config) -> dict:
    """How an app reproduces hv's crop: the window, the cell scale (a frame's, a stream's) and the edge rule."""
    return {
        "what": "square window around each located white cell, resized to the input; outside the frame: edge_fill",
        "cell_diameter_frac": config.locator.cell_diameter_frac,
        "red_cell_ratio": config.locator.red_cell_ratio,
        "fallback_diameter_frac": config.locator.fallback_diameter_frac,
        "crop_context": config.locator.crop_context,
        "edge_fill": config.locator.edge_fill,
        "side_px": "crop_context * cell_diameter_px (or the cell box, if larger)",
        "edge_margin_frac": config.stream.edge_margin_frac,
        "cut": ("a cell whose box comes within edge_margin_frac * cell_diameter_px of a frame edge, or of a round "
                "field stop's shadow (field_stop), may be cut off: hv's live count does not classify it; still "
                "images classify it and mark it cut"),
        "field_stop": (
            f"an eyepiece camera or a phone adapter shows a round view: the frame in grey (BGR to grey as OpenCV) "
            f"resized (area) to {config.stream.motion_width_px} px wide; threshold = {DARK_FRAC:g} x the 90th "
            f"percentile of every 4th pixel each way; if under {100 * MIN_STOP_SHARE:g} % of those are below it, "
            f"no stop; else the pixels below it 8-connected to the border of the small frame are the stop's "
            f"shadow (none if under {100 * MIN_STOP_SHARE:g} % of it); a box widened by the margin on every side, "
            f"on that small frame's grid, that holds a shadow pixel is cut (hv/field_of_view.py)"
        ),
        "cell_diameter_px": (
            "cell_diameter_frac * frame_width when cell_diameter_frac is a number; when it is \"auto\": "
            "red_cell_ratio * the frame's red-cell diameter, measured as hv/scale.py does (green channel "
            "thresholded 40 % of the way from its 95th to its 10th percentile, stained pixels left out; "
            "pale centres filled; per region the distance transform's maximum; twice the median over "
            "regions not cut by the frame edge), or fallback_diameter_frac * frame_width if none is found; "
            "with a nucleus in view (hv/scale.py nucleus_diameter_px: the largest blob of pixels well bluer "
            f"than the field, if over {100 * MIN_NUCLEUS_SHARE:g} % of the frame), kept within "
            f"{CELL_OVER_NUCLEUS[0]}-{CELL_OVER_NUCLEUS[1]} times its equivalent diameter"
        ),
        "uneven_light_below": config.locator.uneven_light_below,
        "uneven_light": (
            f"before the cell scale, the locator and the crop: the small grey frame (as in field_stop) cut into "
            f"{GRID[0]} x {GRID[1]} blocks; each block's {LIGHT_PERCENTILE}th percentile is its plasma level; a "
            f"quadratic surface in x and y (-1..1 across the frame) is fitted by least squares, three rounds, each "
            f"after leaving out blocks under 0.9 of the last fit and blocks over 5 % in a field stop's shadow; "
            f"scaled to 1 at its brightest point in the lit view; if its darkest point there is under "
            f"uneven_light_below (0: never), the same surface is read from each colour channel of the frame "
            f"resized to the small grey frame's size (area), each scaled to 1 at its own brightest; each channel is "
            f"divided by its own surface (where it is 0.05 or more; all three by the grey surface where any "
            f"channel's cannot be read) and clipped to 255, and parts where the grey surface is under "
            f"{DIM_BELOW:g} count as outside the view for the cut rule (like field_stop's shadow); otherwise the "
            f"frame is used as it is. A stream reads one frame in 5 and judges the pointwise median of the last 9 "
            f"grey reads, and divides by the median of the last 9 channel reads, made on frames whose own grey "
            f"read was uneven (hv/illumination.py)"
        ),
        "stain_correction": config.locator.stain_correction,
        "stain_correction_how": (
            "with \"auto\", after resizing: on every 4th pixel of the crop each way that is not near-black "
            "(max channel > 25), optical density OD = -ln((value + 1) / 256) per channel; plasma = the mean OD of "
            f"the least dense {PLASMA_PERCENTILE} % (by summed OD); stained = OD - plasma. Where the mean stained "
            f"OD of the densest 40 % has green / blue >= {PINK_GREEN_OVER_BLUE} (red cells eosin-pink): the crop is "
            f"left as it is if plasma's blue - red OD lies within {LAMP_BLUE_MINUS_RED[0]} to "
            f"{LAMP_BLUE_MINUS_RED[1]} (the training labs' lamp), else R = identity (only the lamp is replaced). "
            "Otherwise red = the unit mean stained OD of the pixels between the "
            f"{RED_PERCENTILES[0]}th and {RED_PERCENTILES[1]}th percentile of summed stained OD; R = the rotation "
            "turning red onto reference_red_od about their cross product (Rodrigues). Every pixel of a crop not "
            "left as it is becomes 256 * exp(-((OD - plasma) R^T + reference_plasma_od)) - 1, clipped to 0-255; "
            "near-black pixels are kept; a crop with fewer than 64 measured pixels, or whose red cells' mean "
            "stained OD is under 0.001 long, is left as it is (hv/stain.py)"
            + ("; with \"always\", every other crop is turned by R and given reference_plasma_od, whatever its "
               "colours (the model was trained on crops made so)" if config.locator.stain_correction == "always"
               else "")
        ),
        "reference_red_od": [float(v) for v in REFERENCE_RED_OD],
        "reference_plasma_od": [float(v) for v in REFERENCE_PLASMA_OD],
        "min_cell_diameter_px": config.locator.min_cell_diameter_px,
        "one_field_spread": ONE_FIELD_SPREAD,
        "small_cells": ("a stream whose cell_diameter_px (its running median) is under min_cell_diameter_px shows its "
                        "cells with less detail than nearly all the model learnt from (a lower magnification): hv "
                        "says the labels are less sure and to use a higher magnification; for one still image, whose "
                        "own estimate spreads wider, the bar is one_field_spread * min_cell_diameter_px; an app "
                        "should say so too"),
        "scale_every": config.stream.scale_every,
        "scale_window": config.stream.scale_window,
        "stream_scale": (
            "a live stream measures cell_diameter_px on one frame in scale_every and uses the median of the "
            "last scale_window measurements; they are forgotten when the view jumps or zooms (hv's "
            "stage-motion estimate is lost), as an objective change does"
        ),
    }


def describe(model_path: Path, variant: str, config: Config, metrics: dict, training: dict,
             int8_tuning: dict | None = None, source_model: Path | None = None) -> dict:
    """The ``model.json`` contents. ``int8_tuning``: how the copy converted to int8 was
    fine-tuned (steps, learning rate, images), if it was. ``source_model``: the Keras model it
    was converted from, named with its sha256 (heat maps are computed from it: ``hv.saliency``)."""
    input_spec, output_spec = tensor_spec(model_path)
    outputs = int(output_spec["shape"][-1])
    if outputs not in (len(CLASS_NAMES), len(OUTPUT_NAMES)):
        raise PackageError(f"{model_path}: {outputs} outputs, but the labels are {len(CLASS_NAMES)} classes "
                           f"or those and \"other\" ({len(OUTPUT_NAMES)})")
    return {
        "format": "hematovision-tflite/1",
        "variant": variant,
        "backbone": config.model.backbone,
        # int8_mixed: these Keras layers run in float32, the rest in int8.
        "float_layers": list(config.export.int8_float_layers) if variant == "int8_mixed" else [],
        # int8 variants: biases corrected for the expected shift of int8 weight rounding.
        "bias_correction": config.export.bias_correction and variant in ("int8", "int8_mixed"),
        # int8 variants: quantisation-aware fine-tuning towards the float model before conversion.
        "quantisation_aware_training": int8_tuning if variant in ("int8", "int8_mixed") else None,
        "class_names": list(OUTPUT_NAMES[:outputs]),
        "input": {
            **input_spec,
            "layout": "NHWC",
            "colour_order": "RGB",
            "pixel_range": [0, 255],
            "normalisation": "none outside the model: feed raw RGB pixel values; the model rescales internally",
        },
        "output": {**output_spec, "meaning": "class probabilities in class_names order (softmax)"},
        "crop": crop_description(config),
        "training": training,
        "source_model": {"name": source_model.name, "sha256": file_sha256(source_model)} if source_model else None,
        # An average of runs (hv average): the runs inside, whose class probabilities the model averages.
        "averaged_runs": averaged_runs(source_model),
        "metrics": metrics,
        "sha256": file_sha256(model_path),
        "size_bytes": model_path.stat().st_size,
    }


def averaged_runs(source_model: Path | None) -> list[dict] | None:
    """The members ``hv average`` listed beside the Keras model (its run folder's members.json), or None."""
    listing = source_model.parent / "members.json" if source_model else None
    if listing is None or not listing.is_file():
        return None
    return [{"name": Path(m["model"]).parent.name, "sha256": m["sha256"]}
            for m in json.loads(listing.read_text())["members"]]


def write_package(model_path: Path, out_dir: Path, description: dict, model_card: str) -> Path:
    """Assemble the package in a temporary folder and move it to ``out_dir`` when complete."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        shutil.copyfile(model_path, staging / "model.tflite")
        (staging / "labels.txt").write_text("\n".join(description["class_names"]) + "\n")
        (staging / "model.json").write_text(json.dumps(description, indent=2) + "\n")
        (staging / "MODEL_CARD.md").write_text(model_card)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def check_package(folder: Path) -> dict:
    """Re-read a package and check its parts agree; returns model.json.

    Raises:
        PackageError: a file is missing, the checksum or labels disagree with the model.
    """
    folder = Path(folder)
    missing = [name for name in PACKAGE_FILES if not (folder / name).is_file()]
    if missing:
        raise PackageError(f"{folder}: incomplete package, missing {', '.join(missing)}")
    description = json.loads((folder / "model.json").read_text())
    labels = (folder / "labels.txt").read_text().split()
    if labels != description["class_names"]:
        raise PackageError(f"{folder}: labels.txt {labels} differs from model.json {description['class_names']}")
    if file_sha256(folder / "model.tflite") != description["sha256"]:
        raise PackageError(f"{folder}: model.tflite does not match the sha256 in model.json")
    input_spec, output_spec = tensor_spec(folder / "model.tflite")
    if output_spec["shape"][-1] != len(labels) or input_spec["shape"] != description["input"]["shape"]:
        raise PackageError(f"{folder}: model.tflite's tensors differ from model.json")
    return description


def config_summary(config: Config) -> dict:
    return {"model": dataclasses.asdict(config.model), "locator": dataclasses.asdict(config.locator)}
