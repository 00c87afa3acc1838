"""Typed configuration, read once from ``config.toml`` and passed down.

Each TOML table maps onto one frozen dataclass. Loading rejects unknown keys,
wrong types and impossible values with a message naming the key path, the
value and what is expected. Relative paths are resolved against the config
file's folder, so a run does not depend on the current directory.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is expected."""


@dataclass(frozen=True)
class DataConfig:
    # Data sources (labs) trained on together, each a folder of class folders; "FOLDER#train" /
    # "FOLDER#test" take a fixed part of a folder that comes without a split (training/data.py).
    train_dirs: tuple[str, ...] = ("../shared/data/blood-cells/TRAIN", "../shared/data/pbc/TRAIN",
                                   "../shared/data/pbc/OTHER#train")
    # Scored apart and together by hv evaluate. Empty: hold out test_fraction of the training
    # sources' fields as the test set (stratified, seeded).
    test_dirs: tuple[str, ...] = ("../shared/data/blood-cells/TEST", "../shared/data/pbc/TEST",
                                  "../shared/data/pbc/OTHER#test")
    test_fraction: float = 0.2
    # Fraction of TRAIN's original fields held out for validation (grouped, see training/data.py).
    val_fraction: float = 0.1
    # Cross-validation by original field: "I/K" holds out the I-th of K folds of every source's and
    # class's originals (drawn with train.seed) instead of val_fraction, so K runs with I = 1..K and
    # one seed validate on every original once; "" = val_fraction. One split holds ~24
    # blood-cells originals, too few to tell recipes apart (BENCHMARKS.md, "How many epochs").
    val_fold: str = ""
    # Seed of the validation (and test) split; -1: train.seed. Runs to be averaged (hv average) are
    # trained with one split seed and different train.seed, so that they hold out the same originals.
    split_seed: int = -1
    # Which images are copies of one original field, for the validation and test splits:
    # "bundled" (blood-cells/'s originals, training/originals/blood-cells.csv), "none" (the
    # _<field>_ id in file names only: leaky on blood-cells/) or a CSV of path,group rows.
    original_groups: str = "bundled"
    # "cell": classify a crop around the located white cell (what the stream sees);
    # "field": classify the whole image.
    input: Literal["cell", "field"] = "cell"

    @property
    def fold(self) -> tuple[int, int] | None:
        """``val_fold`` as (I, K), or None for a ``val_fraction`` split."""
        return parse_fold(self.val_fold) if self.val_fold else None


def parse_fold(text: str) -> tuple[int, int]:
    """"I/K" -> (I, K) with 1 <= I <= K and K >= 2.

    Raises:
        ConfigError: anything else.
    """
    index, slash, folds = text.partition("/")
    if slash and index.strip().isdigit() and folds.strip().isdigit():
        i, k = int(index), int(folds)
        if k >= 2 and 1 <= i <= k:
            return i, k
    raise ConfigError(f"data.val_fold = {text!r}: expected \"I/K\", fold I of K folds, with K >= 2 and 1 <= I <= K "
                      f"(e.g. \"1/5\"), or \"\" to hold out data.val_fraction")


@dataclass(frozen=True)
class LocatorConfig:
    # Expected white-cell diameter: "auto" measures it in every frame from the red cells
    # (hv/scale.py), so any objective, camera or lab works without a setting; a number fixes it
    # as a fraction of the frame width (BCCD at 100x: 0.28).
    cell_diameter_frac: float | Literal["auto"] = "auto"
    # "auto": expected white-cell diameter / measured red-cell diameter. Chosen so that "auto"
    # reproduces 0.28 of the width on blood-cells/TRAIN (benchmarks/scale_accuracy.py).
    red_cell_ratio: float = 2.13
    # "auto" on a frame with no measurable red cells: this fraction of the frame width.
    fallback_diameter_frac: float = 0.28
    # Frames are located at this width (speed); boxes come back in frame pixels.
    work_width_px: int = 320
    # Nucleus blobs smaller than this fraction of the expected nucleus area are platelets/noise.
    min_area_frac: float = 0.12
    # A field with no blue-purple nucleus (another stain, or no white cell in view) is searched
    # again for nuclei as its densest objects: optical density (summed over channels) this much
    # above the plasma's. 2.0: above BCCD's views with no white cell (at most 1.29 on the half it
    # was chosen on) and under PBC nuclei drawn brown-red (1st percentile 2.61),
    # benchmarks/locator_other_stains.py. 0 = off: Romanowsky-type stains only.
    dense_nucleus_od: float = 2.0
    # The same search where the field's red cells are not eosin-pink (hv.stain.red_cells_pink:
    # another stain, whose nuclei need only stand above its red cells). 1.2: on the even-positioned
    # BCCD fields drawn with brown-red nuclei and a yellow eosin, the most cells found (recall 0.47 at
    # IoU 0.5, against 0 at 2.0) while inventing a cell in no more of their views without a white
    # cell than the blue-purple search does in them unshifted (1.3 %); benchmarks/locator_other_stains.py.
    other_stain_nucleus_od: float = 1.2
    # Side of the classifier's crop window, in expected cell diameters.
    crop_context: float = 1.4
    # What fills the part of a crop window that lies outside the frame: a mirror image of the
    # frame, or black (as the rotated corners of the training images).
    edge_fill: Literal["reflect", "black"] = "reflect"
    # "auto": a crop whose red cells are not eosin-pink (a stain unlike the training labs') has its
    # colours turned to theirs before classifying, and one lit by a lamp of another colour gets their
    # plasma (hv/stain.py); the others, every training crop among them, are left as they are.
    # "off": every crop as the camera gave it. "always" (a trial, BENCHMARKS.md "Every crop in one
    # colour"): every crop's colours turned and its plasma replaced, training crops too, so a model
    # trained with it must be scored with it.
    stain_correction: Literal["auto", "off", "always"] = "auto"
    # A frame whose expected cell diameter is under this many pixels shows its cells with less detail
    # than nearly all the model learnt from (a lower magnification: the crop is enlarged to the input, its
    # labels less sure); the stream and `hv classify` say so. The bundled model's: the 5th percentile of
    # blood-cells/TRAIN's, its smaller-celled source (benchmarks/training_cell_sizes.py). 0 = never said.
    min_cell_diameter_px: float = 75.0
    # Uneven light (a vignette, a lamp off the axis): where the plasma's fitted light falls under this share of
    # its brightest within the view, each colour channel is divided by its own light before cells are located
    # and cropped (hv/illumination.py). Under the lowest read of every blood-cells/TRAIN and pbc/TRAIN image, so that no
    # training crop changes (benchmarks/illumination.py). 0 = never.
    uneven_light_below: float = 0.6


@dataclass(frozen=True)
class ModelConfig:
    backbone: Literal["efficientnet_b0", "efficientnet_lite0"] = "efficientnet_lite0"
    # "imagenet", "none", or a path to a weights file.
    weights: str = "imagenet"
    image_size: int = 224
    dropout: float = 0.3
    dense_units: int = 256


@dataclass(frozen=True)
class AugmentConfig:
    rotation: float = 0.5  # fraction of a full turn, either way (a cell has no up or down)
    zoom: float = 0.1
    horizontal_flip: bool = True
    vertical_flip: bool = True
    translate: float = 0.05
    brightness: float = 0.15
    contrast: float = 0.15
    saturation: float = 0.2
    hue: float = 0.04  # stain colour varies between labs and slides
    # Stain-space jitter (training/augment.py RandomStain): each stain's amount x (1 ± stain_scale)
    # ± stain_shift optical density, then each colour channel's gain x (1 ± white_balance).
    stain_scale: float = 0.25
    stain_shift: float = 0.05
    white_balance: float = 0.15
    # The nucleus stain's hue: the haematoxylin vector turned about the grey axis by up to
    # nucleus_hue x half a turn either way, the eosin vector kept (granule colour tells
    # eosinophils from neutrophils; nucleus colour tells no class). 0 = off.
    nucleus_hue: float = 0.0
    # Gaussian blur of each batch, sigma drawn from [0, blur] pixels of the model input
    # (training/augment.py RandomBlur): cameras differ in sharpness as much as stains in colour. 0 = off.
    blur: float = 0.0
    # A camera's grain: Gaussian noise up to this many grey levels (0-255) of the model input, on half the
    # images (training/augment.py RandomGrain; a dim view at a high gain: BENCHMARKS.md, "A noisy camera"). 0 = off.
    grain: float = 0.0


@dataclass(frozen=True)
class PhaseConfig:
    epochs: int = 3
    learning_rate: float = 1e-3
    # Phase 2 only: how many of the backbone's last layers to unfreeze (BatchNorm stays frozen).
    unfreeze_layers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    label_smoothing: float = 0.1
    out_dir: str = "runs"
    early_stopping_patience: int = 0  # 0 = off
    # Also save the model after every epoch (epoch_NN.keras in the run folder, without the training
    # lab's statistics that model.keras stores for hv adapt): to choose the epoch count on held-out data.
    keep_epoch_models: bool = False
    # Run the frozen part of the backbone once over augmented views and train the rest on the
    # cached activations: the same model, several times faster on a CPU.
    cache_frozen_features: bool = True
    views_per_image: int = 2
    # Where to train (training/distribute.py): "default" (one device), "mirrored" (all local GPUs) or
    # "multi_worker" (several machines, from TF_CONFIG). batch_size is the global batch over replicas.
    strategy: Literal["default", "mirrored", "multi_worker"] = "default"
    # float16 compute with float32 weights: "auto" = on an NVIDIA GPU of compute capability 7.0+.
    mixed_precision: Literal["auto", "on", "off"] = "auto"
    phase1: PhaseConfig = field(default_factory=lambda: PhaseConfig(epochs=4, learning_rate=1e-3))
    phase2: PhaseConfig = field(
        default_factory=lambda: PhaseConfig(epochs=2, learning_rate=1e-4, unfreeze_layers=56)
    )


@dataclass(frozen=True)
class StreamConfig:
    # A cell whose mean top probability is below this is shown and counted as unidentified.
    min_confidence: float = 0.5
    # A counted cell under this confidence is marked "check" on the review page, and the status line and
    # summary.json say how many are left (BENCHMARKS.md, "Cells to check").
    check_below: float = 0.7
    # Re-classify a track every N frames until it has max_votes votes (mean of the votes).
    recheck_every: int = 15
    max_votes: int = 3
    # Tracking: overlap with the last box to continue a track; frames a track may go unseen.
    track_min_iou: float = 0.3
    track_max_missing: int = 10
    # A box no track takes by overlap continues the cell whose centre lies within this share of the
    # expected cell diameter of its own: the locator found another part of that cell (a nucleus's lobes,
    # apart in a pale stain). Cells lie a diameter or more apart; 0 = overlap only.
    track_max_centre_frac: float = 0.5
    # A box still left over that lies this much inside (share of its area) the largest whole box a cell was
    # seen with belongs to that cell (an eosinophil's far-apart lobes, found as two boxes or one alone): it
    # continues the cell, or is dropped as a part if the cell has a box in the frame. Not a new cell.
    # Distinct cells side by side lie under half inside each other's box; 0 = off.
    track_part_of_cell: float = 0.75
    # Tracks unseen for longer are remembered at their slide position (up to this many), so a cell
    # that comes back into view after a pan back keeps its identity and is not counted again.
    max_remembered_cells: int = 20_000
    # A box closer to the frame edge than this share of the expected cell diameter may be a cut cell
    # (the locator's box can stop short of a cell's true edge): tracked, never classified.
    edge_margin_frac: float = 0.2
    # A view whose box keeps this many cell diameters from every frame edge is clear: a track's first
    # clear view votes at once and replaces its views nearer the edge; after that only clear views vote.
    clear_view_frac: float = 0.35
    # The differential is complete at this many identified cells (no more are added); 0 = no target.
    target_count: int = 100
    # Stage motion (phase correlation of grey frames this wide): below min_response the motion is
    # lost and a new region starts; a new keyframe every keyframe_shift_frac of the width travelled.
    motion_width_px: int = 320
    motion_min_response: float = 0.1
    keyframe_shift_frac: float = 0.15
    # A frame whose match with the keyframe is under this response is matched with the last good frame
    # too; where that match is at least this sure and puts the view elsewhere, it is believed: a JPEG
    # camera's blocks gave a false peak at 0.23 that moved the slide 300 px (correct matches on the
    # counting slides: 5th percentile 0.52-0.72).
    motion_sure_response: float = 0.5
    # The cell scale ("auto"): measured on one frame in scale_every, the median of the last
    # scale_window measurements; it restarts when the stage motion is lost (hv.locator.RunningCellScale).
    scale_every: int = 10
    scale_window: int = 9
    # Frame quality: a frame is out of focus below focus_min_ratio x the focus_reference_quantile of
    # the last focus_window frames (after focus_warmup frames); motion blur when the gradient energy
    # along one axis exceeds motion_blur_anisotropy x the other's; too dark below dark_mean (0-255);
    # overexposed when more than clipped_max_share of pixels are at 250+; a colour cast when the
    # background's largest / smallest channel mean exceeds colour_cast_max (BCCD 1.02, PBC 1.26).
    focus_min_ratio: float = 0.5
    focus_reference_quantile: float = 0.9
    focus_window: int = 60
    focus_warmup: int = 5
    motion_blur_anisotropy: float = 1.6
    dark_mean: float = 40.0
    clipped_max_share: float = 0.5
    colour_cast_max: float = 2.0
    # A camera sending JPEG frames below this quality (read back from the frames' 8 x 8 blocks,
    # hv.jpeg_blocks) is too compressed to classify from: on the counting benchmark's slide of
    # whole fields the labels held at quality 25 (92 % agreeing with BCCD's) and fell at 20 (82 %).
    # 0 turns the check off.
    jpeg_quality_min: float = 23.0
    # A camera noisier than this (hv.noise: the grain's standard deviation in grey levels at the classifier's
    # scale) is said to be ("labels less sure"), not skipped: above the highest read of every training
    # image (benchmarks/camera_noise.py). 0 = never said.
    noise_max: float = 1.75


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 7860
    # Login name; empty = no login. The password comes from the HV_PASSWORD environment variable.
    username: str = ""
    max_upload_mb: int = 200
    # Server-side recordings the live tab may play; empty = none (users cannot name arbitrary paths).
    video_dir: str = ""
    # The cameras (indices, as "0") and network streams (URLs) that visitors may open; a visitor
    # can pick among these and never name another device or address (no request forgery).
    cameras: tuple[str, ...] = ()
    stream_urls: tuple[str, ...] = ()
    # Live sessions running at once, all visitors together; more are refused until one stops.
    max_live_sessions: int = 4
    # A live session no page has polled for this long (a closed laptop, a lost network) is closed.
    idle_session_s: float = 900.0
    # Cells a user relabels on the Review page: crops in class folders + corrections.csv, a data source
    # for hv train (stream/corrections.py). Empty: the count follows the correction, nothing is saved.
    corrections_dir: str = "hv-corrections"


@dataclass(frozen=True)
class ExportConfig:
    calibration_images: int = 200
    # Keras layers the "int8_mixed" TFLite variant keeps in float32. Lite0's ImageNet stem has
    # folded weights up to ~17, so int8 weights there err ~10 quantisation steps per output.
    # stem_bn and stem_relu6 fuse into stem_conv in one run; in an average of runs the converter
    # merges the runs' identical frozen stems and each run's stem_bn runs apart: float too.
    int8_float_layers: tuple[str, ...] = ("rescale", "stem_conv", "stem_bn", "stem_relu6", "block0_dwconv")
    # Fold the expected shift of int8 weight rounding into the biases before conversion
    # (mobile/bias_correction.py); the Keras model itself is not changed.
    bias_correction: bool = True
    # Quantisation-aware fine-tuning of the copy converted to int8 (mobile/quantisation_aware.py):
    # steps of distillation towards the float model through simulated int8 (0 = off), its
    # Adam learning rate, and how many TRAIN images it draws crops from.
    qat_steps: int = 600
    qat_learning_rate: float = 1e-5
    qat_images: int = 1600


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    locator: LocatorConfig = field(default_factory=LocatorConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    @property
    def split_seed(self) -> int:
        """The seed of the validation and test splits: ``data.split_seed``, or ``train.seed`` when it is -1."""
        return self.data.split_seed if self.data.split_seed >= 0 else self.train.seed


# Values that must be positive / in [0, 1]; checked after types.
_POSITIVE = {
    "locator.cell_diameter_frac", "locator.red_cell_ratio", "locator.work_width_px", "locator.crop_context",
    "model.image_size", "model.dense_units", "train.batch_size", "train.views_per_image",
    "train.phase1.learning_rate", "train.phase2.learning_rate", "stream.recheck_every", "stream.max_votes",
    "serve.port", "serve.max_upload_mb", "serve.max_live_sessions", "serve.idle_session_s", "export.calibration_images",
    "export.qat_learning_rate",
    "export.qat_images", "stream.max_remembered_cells", "stream.motion_width_px", "stream.focus_window",
    "stream.motion_blur_anisotropy", "stream.colour_cast_max", "stream.clear_view_frac",
    "stream.scale_every", "stream.scale_window",
}
_UNIT_INTERVAL = {
    "data.val_fraction", "data.test_fraction", "model.dropout", "augment.rotation", "augment.zoom", "augment.translate",
    "augment.brightness", "augment.contrast", "augment.saturation", "augment.hue",
    "augment.stain_scale", "augment.stain_shift", "augment.white_balance", "augment.nucleus_hue",
    "train.label_smoothing", "locator.min_area_frac", "locator.cell_diameter_frac",
    "locator.fallback_diameter_frac", "stream.min_confidence", "stream.check_below",
    "stream.track_min_iou", "stream.track_max_centre_frac", "stream.track_part_of_cell",
    "stream.motion_min_response", "stream.keyframe_shift_frac", "stream.motion_sure_response",
    "stream.focus_min_ratio",
    "stream.focus_reference_quantile", "stream.clipped_max_share",
}
_NON_NEGATIVE = {
    "train.phase1.epochs", "train.phase2.epochs", "train.phase2.unfreeze_layers",
    "train.early_stopping_patience", "train.phase1.unfreeze_layers", "stream.track_max_missing",
    "export.qat_steps", "stream.edge_margin_frac", "stream.target_count", "stream.dark_mean", "stream.focus_warmup",
    "stream.jpeg_quality_min", "stream.noise_max",
    "augment.blur", "augment.grain", "locator.dense_nucleus_od", "locator.other_stain_nucleus_od",
    "locator.min_cell_diameter_px", "locator.uneven_light_below",
}
_PATHS = {"train.out_dir", "serve.video_dir", "serve.corrections_dir", "data.original_groups"}
_PATH_KEYWORDS = {"bundled", "none"}  # values of path keys that are not paths
_PATH_LISTS = {"data.train_dirs", "data.test_dirs"}  # entries may end in "#train" / "#test"


def _check_value(key: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(expected):
            try:
                return _check_value(key, value, arm)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r}: expected {' or '.join(_describe(a) for a in typing.get_args(expected))}")
    if origin is Literal:
        if value not in typing.get_args(expected):
            options = ", ".join(repr(a) for a in typing.get_args(expected))
            raise ConfigError(f"{key} = {value!r}: expected one of {options}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return value
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        return float(value)
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    if expected == tuple[str, ...]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} = {value!r}: expected a list of strings")
        return tuple(value)
    raise TypeError(f"unsupported config type for {key}: {expected}")


def _resolve_source(base_dir: Path, entry: str) -> str:
    folder, hash_sign, part = entry.partition("#")
    return str((base_dir / folder).resolve()) + hash_sign + part


def _describe(expected: Any) -> str:
    if typing.get_origin(expected) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(expected))
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(expected, str(expected))


def _build(cls: type, table: dict, prefix: str, base_dir: Path | None) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - names)
    if unknown:
        where = f"[{prefix}]" if prefix else "the top level"
        raise ConfigError(
            f"unknown key {unknown[0]!r} in {where}; known keys: {', '.join(sorted(names))}"
        )
    defaults = cls()
    values = {}
    for name in names:
        key = f"{prefix}.{name}" if prefix else name
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            sub = table.get(name, {})
            default_sub = getattr(defaults, name)
            # A partial sub-table overrides the field's own default, not the class default.
            merged = {**dataclasses.asdict(default_sub), **sub} if isinstance(sub, dict) else sub
            values[name] = _build(expected, merged, key, base_dir)
            continue
        value = _check_value(key, table[name], expected) if name in table else getattr(defaults, name)
        numeric = isinstance(value, (int, float))  # a keyword such as "auto" was checked against its Literal
        if numeric and key in _POSITIVE and value <= 0:
            raise ConfigError(f"{key} = {value!r}: expected a value > 0")
        if numeric and key in _UNIT_INTERVAL and not 0 <= value <= 1:
            raise ConfigError(f"{key} = {value!r}: expected a value between 0 and 1")
        if numeric and key in _NON_NEGATIVE and value < 0:
            raise ConfigError(f"{key} = {value!r}: expected a value >= 0")
        if key == "data.split_seed" and value < -1:
            raise ConfigError(f"{key} = {value!r}: expected a seed >= 0, or -1 for train.seed")
        if key in _PATHS and base_dir is not None and name in table and value and value not in _PATH_KEYWORDS:
            value = str((base_dir / value).resolve())
        if key in _PATH_LISTS and base_dir is not None and name in table:
            value = tuple(_resolve_source(base_dir, entry) for entry in value)
        values[name] = value
    return cls(**values)


def config_from_dict(table: dict, base_dir: Path | None = None) -> Config:
    """Build and validate a Config from a parsed TOML table.

    Args:
        table: the parsed TOML document.
        base_dir: folder that relative paths are resolved against (None: leave them).

    Raises:
        ConfigError: unknown key, wrong type or impossible value.
    """
    config = _build(Config, table, "", base_dir)
    if config.data.val_fold:
        parse_fold(config.data.val_fold)  # a clear error now, not when the split is made
    if config.model.weights not in ("imagenet", "none") and base_dir is not None:
        weights = (base_dir / config.model.weights).resolve()
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, weights=str(weights)))
    return config


def load_config(path: str | Path) -> Config:
    """Read and validate ``config.toml``.

    Raises:
        ConfigError: the file is missing, is not valid TOML, or holds an invalid value.
    """
    path = Path(path)
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found; pass --config PATH") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    try:
        return config_from_dict(table, base_dir=path.resolve().parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def override(config: Config, **dotted: Any) -> Config:
    """Return a copy with ``section.key`` values replaced (CLI flags win over the file).

    ``None`` values are ignored so that unset flags leave the file's value. Values go
    through the same validation as the file.
    """
    table = dataclasses.asdict(config)
    changed = False
    for dotted_key, value in dotted.items():
        if value is None:
            continue
        *parents, leaf = dotted_key.split(".")
        node = table
        for part in parents:
            node = node[part]
        node[leaf] = value
        changed = True
    return config_from_dict(table) if changed else config
