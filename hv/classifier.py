"""One classifier interface over a Keras ``.keras`` model or a LiteRT ``.tflite`` model.

Both take a batch of (S, S, 3) uint8 RGB crops made by ``hv.locator.crop_cell`` (or
``hv.preprocess.field_to_model_input``) and return class probabilities in
``hv.labels.CLASS_NAMES`` order. The backend is chosen from the file's suffix; a
missing or broken model raises, never falls back.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Protocol

import numpy as np

from hv.labels import NUM_CLASSES, NUM_OUTPUTS
from hv.preprocess import to_model_batch

# Four outputs: a model trained before the "other" output existed.
_OUTPUT_COUNTS = (NUM_CLASSES, NUM_OUTPUTS)


def with_other_column(probs: np.ndarray) -> np.ndarray:
    """(n, 4) or (n, 5) probabilities -> (n, NUM_OUTPUTS): a four-class model never says "other"."""
    if probs.shape[-1] == NUM_OUTPUTS:
        return probs
    return np.concatenate([probs, np.zeros((len(probs), NUM_OUTPUTS - probs.shape[-1]), probs.dtype)], axis=-1)


class ModelLoadError(RuntimeError):
    """The model file is missing, corrupt or not a classifier of the expected shape."""


class Classifier(Protocol):
    image_size: int

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(n, S, S, 3) uint8 RGB -> (n, NUM_OUTPUTS) float32 probabilities (``hv.labels.OUTPUT_NAMES``)."""
        ...


class KerasClassifier:
    """A ``.keras`` model from ``hv train``; calls ``predict_on_batch`` (``predict`` costs ~80 ms a call)."""

    def __init__(self, path: str | Path, batch_size: int = 32):
        import keras  # heavy: imported only when a Keras model is used

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        try:
            self._model = keras.saving.load_model(path, compile=False)
        except Exception as exc:  # Keras raises many types for a bad archive
            raise ModelLoadError(f"{path}: not a loadable Keras model ({exc})") from exc
        shape = self._model.input_shape
        if self._model.output_shape[-1] not in _OUTPUT_COUNTS or len(shape) != 4 or shape[1] != shape[2]:
            raise ModelLoadError(
                f"{path}: expected a square-image model with {NUM_CLASSES} or {NUM_OUTPUTS} outputs, got input {shape} "
                f"and output {self._model.output_shape}"
            )
        self.image_size = int(shape[1])
        self.path = path
        self._batch_size = batch_size

    @property
    def model(self):
        """The loaded ``keras.Model`` (for commands that change it, like ``hv adapt``)."""
        return self._model

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        batch = to_model_batch(crops_rgb)
        if len(batch) == 0:
            return np.zeros((0, NUM_OUTPUTS), np.float32)
        parts = [np.asarray(self._model.predict_on_batch(batch[i : i + self._batch_size]))
                 for i in range(0, len(batch), self._batch_size)]
        return with_other_column(np.concatenate(parts).astype(np.float32))


class LiteRTClassifier:
    """A ``.tflite`` model run by the LiteRT interpreter (float or quantised input/output)."""

    def __init__(self, path: str | Path, num_threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter  # imported only when a TFLite model is used

        path = Path(path)
        if not path.is_file():
            raise ModelLoadError(f"model file {path} does not exist")
        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for bad flatbuffers
            raise ModelLoadError(f"{path}: not a loadable TFLite model ({exc})") from exc
        self._input = self._interpreter.get_input_details()[0]
        self._output = self._interpreter.get_output_details()[0]
        shape = tuple(self._input["shape"])
        outputs = int(self._output["shape"][-1])
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3 or outputs not in _OUTPUT_COUNTS:
            raise ModelLoadError(
                f"{path}: expected input (1, S, S, 3) and {NUM_CLASSES} or {NUM_OUTPUTS} outputs, got input {shape} "
                f"and output {tuple(self._output['shape'])}"
            )
        self.image_size = int(shape[1])
        self.path = path
        # One interpreter holds one set of tensors: the web app classifies from its live
        # thread and from request handlers at once, so set/invoke/get must not interleave.
        self._lock = threading.Lock()

    def _quantise(self, batch: np.ndarray) -> np.ndarray:
        dtype = self._input["dtype"]
        if np.issubdtype(dtype, np.floating):
            return batch.astype(dtype)
        scale, zero_point = self._input["quantization"]
        info = np.iinfo(dtype)
        return np.clip(np.round(batch / scale + zero_point), info.min, info.max).astype(dtype)

    def _dequantise(self, values: np.ndarray) -> np.ndarray:
        if np.issubdtype(values.dtype, np.floating):
            return values.astype(np.float32)
        scale, zero_point = self._output["quantization"]
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def predict(self, crops_rgb: np.ndarray) -> np.ndarray:
        batch = self._quantise(to_model_batch(crops_rgb))
        out = np.zeros((len(batch), int(self._output["shape"][-1])), np.float32)
        for i, image in enumerate(batch):  # the exported model has batch size 1, as in an app
            with self._lock:
                self._interpreter.set_tensor(self._input["index"], image[None])
                self._interpreter.invoke()
                raw = self._interpreter.get_tensor(self._output["index"])[0]
            out[i] = self._dequantise(raw)
        return with_other_column(out)


def load_classifier(path: str | Path, num_threads: int | None = None) -> Classifier:
    """Open a classifier by suffix: ``.keras`` (Keras) or ``.tflite`` (LiteRT).

    Raises:
        ModelLoadError: unknown suffix, missing or unusable file.
    """
    path = Path(path)
    if path.suffix == ".keras":
        return KerasClassifier(path)
    if path.suffix == ".tflite":
        return LiteRTClassifier(path, num_threads=num_threads)
    raise ModelLoadError(f"{path}: unknown model type {path.suffix!r}; expected a .keras or .tflite file")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_identity(classifier: Classifier) -> dict[str, str | None]:
    """The model's file name and sha256, so every count can be traced to the model that made it.

    Classifiers not read from a file (a test's stand-in) give their type's name and no hash.
    """
    path = getattr(classifier, "path", None)
    if path is None or not Path(path).is_file():
        return {"name": type(classifier).__name__, "sha256": None}
    path = Path(path)
    name = f"{path.parent.name}/{path.name}" if path.name == "model.tflite" else path.name  # a package: its folder
    return {"name": name, "sha256": file_sha256(path)}
