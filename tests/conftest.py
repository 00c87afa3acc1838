"""Tiny data built in tmp_path, and a config built in code (not read from the repo's file)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from hv.bundled import SAMPLE_FIELDS  # noqa: E402
from hv.config import Config, DataConfig, LocatorConfig, ModelConfig, PhaseConfig, TrainConfig  # noqa: E402
from hv.labels import CLASS_NAMES  # noqa: E402

SAMPLES = SAMPLE_FIELDS


def draw_field(rng: np.random.Generator, label: int, width: int = 160, height: int = 120,
               cells: int = 1, cell_frac: float = 0.28, cast: tuple[float, float, float] = (1, 1, 1)) -> np.ndarray:
    """A synthetic smear field, RGB: pale background, pink red cells, purple nuclei.

    The nucleus size and shape depend on the class so that a tiny model can learn them.
    Another "lab": ``cell_frac`` (white-cell diameter / width) sets the magnification and
    ``cast`` multiplies each RGB channel (stain and white balance).
    """
    image = np.full((height, width, 3), (214, 212, 218), np.uint8)
    diameter = cell_frac * width
    # Red cells a white cell's diameter / red_cell_ratio across, so that the scale measured
    # from them ("auto") gives the same crop as the fixed 0.28 of the width.
    red_cell_radius = int(round(diameter / LocatorConfig().red_cell_ratio / 2))
    centres = [(int(width * (0.3 + 0.4 * k) if cells > 1 else rng.integers(int(width * 0.35), int(width * 0.65))),
                int(rng.integers(int(height * 0.35), int(height * 0.65)))) for k in range(cells)]
    # A red-cell grid with jitter, clear of the white cells, as in a thin smear's monolayer.
    step = 2.6 * red_cell_radius
    for gy in np.arange(step / 2, height, step):
        for gx in np.arange(step / 2, width, step):
            x, y = (np.array([gx, gy]) + rng.uniform(-0.3, 0.3, 2) * red_cell_radius).astype(int)
            if all(np.hypot(x - cx, y - cy) > diameter / 2 + red_cell_radius for cx, cy in centres):
                cv2.circle(image, (int(x), int(y)), red_cell_radius, (205, 150, 160), -1)
    for cx, cy in centres:
        cv2.circle(image, (cx, cy), int(diameter / 2), (200, 180, 215), -1)  # cytoplasm
        radius = int(diameter * (0.24 + 0.05 * label))  # a nucleus of 0.48-0.78 cell diameters
        if label == 3:  # lobed nucleus: three blobs
            for dx, dy in ((-1, 0), (1, 0), (0, 1)):
                cv2.circle(image, (cx + dx * radius // 2, cy + dy * radius // 2), radius // 2, (90, 60, 200), -1)
        else:
            cv2.circle(image, (cx, cy), radius, (100 + 30 * label, 60, 200), -1)
    return np.clip(image * np.array(cast, np.float32), 0, 255).astype(np.uint8)


@pytest.fixture
def tiny_image() -> np.ndarray:
    return draw_field(np.random.default_rng(0), label=1)


@pytest.fixture
def tiny_dataset_dir(tmp_path: Path) -> Path:
    """Kaggle-style folder: 3 PNG fields per class, named _<field>_<copy>.png."""
    rng = np.random.default_rng(1)
    root = tmp_path / "data"
    for label, name in enumerate(CLASS_NAMES):
        folder = root / name.upper()
        folder.mkdir(parents=True)
        for i in range(3):
            image = draw_field(rng, label)
            cv2.imwrite(str(folder / f"_{i}_{i * 7}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


@pytest.fixture
def config(tmp_path: Path, tiny_dataset_dir: Path) -> Config:
    """Small and fast: 32-pixel inputs, random weights, one epoch per phase."""
    return Config(
        data=DataConfig(train_dirs=(str(tiny_dataset_dir),), test_dirs=(str(tiny_dataset_dir),), val_fraction=0.0),
        model=ModelConfig(weights="none", image_size=32),
        train=TrainConfig(batch_size=4, out_dir=str(tmp_path / "runs"), views_per_image=2,
                          phase1=PhaseConfig(epochs=1, learning_rate=1e-3),
                          phase2=PhaseConfig(epochs=1, learning_rate=1e-4, unfreeze_layers=20)),
    )


@pytest.fixture
def tiny_model_path(tmp_path: Path, config: Config) -> Path:
    """A saved .keras model with the real input/output contract (random weights, 32 px)."""
    from hv.model import build_model

    path = tmp_path / "tiny.keras"
    build_model(config.model).save(path)
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    """Two saved 64-px models whose heads differ (random weights answer 0.2 for every crop)."""
    import keras

    from hv.model import build_model

    paths = []
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        keras.utils.set_random_seed(seed)  # the backbones' random weights too: the same two runs every time
        model = build_model(ModelConfig(weights="none", image_size=64))
        for name in ("dense", "pred"):
            layer = model.get_layer(name)
            layer.set_weights([rng.normal(0, 1, w.shape).astype(np.float32) for w in layer.get_weights()])
        paths.append(tmp_path / f"run{seed}.keras")
        model.save(paths[-1])
    return paths


def replace(obj, **changes):
    return dataclasses.replace(obj, **changes)


@pytest.fixture(scope="session")
def learned_model(tmp_path_factory):
    """A model that has learned the synthetic classes: (model path, config, held-out test folder).

    Trained once per session (about 15 s): ImageNet Lite0 at 64 px, head only, 10 epochs on
    20 fields per class. Tests that compare two models' answers use it, since a model whose
    output is the same for every input agrees with anything.
    """
    from training.train import train

    root = tmp_path_factory.mktemp("learned")
    rng = np.random.default_rng(11)
    for split, count in (("TRAIN", 20), ("TEST", 10)):
        for label, name in enumerate(CLASS_NAMES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(folder / f"{split}_{i}.png"), cv2.cvtColor(draw_field(rng, label), cv2.COLOR_RGB2BGR))
    config = Config(
        data=DataConfig(train_dirs=(str(root / "TRAIN"),), test_dirs=(str(root / "TEST"),), val_fraction=0.0),
        model=ModelConfig(weights="imagenet", image_size=64),
        train=TrainConfig(batch_size=8, out_dir=str(root / "runs"), label_smoothing=0.0,
                          phase1=PhaseConfig(epochs=10, learning_rate=3e-3),
                          phase2=PhaseConfig(epochs=0, learning_rate=1e-4, unfreeze_layers=20)),
    )
    run = train(config, root / "runs" / "learned")
    return run / "model.keras", config, root / "TEST"
