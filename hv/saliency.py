"""What the classifier looked at: Grad-CAM heat maps from the Keras model (Selvaraju et al. 2017).

The gradient of a class's score with respect to the backbone's last feature map, averaged
over space, weighs each feature channel; the weighted sum of channels, rectified, shows
where in the crop the evidence for that class lies. It needs gradients, so it runs on
the Keras model: for an int8 app package, on the Keras model the package was exported
from (``model.json``'s ``source_model``), which ``find_source_model`` looks for.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from hv.classifier import ModelLoadError, file_sha256
from hv.preprocess import to_model_batch

log = logging.getLogger(__name__)

_HEAD_LAYERS = ("avg_pool", "top_dropout", "dense", "pred")  # hv.model.build_model's head, in order


class GradCam:
    """Grad-CAM over ``hv.model.build_model``'s backbone output (each run's, for an average of runs).

    Example:
        cam = GradCam("models/hv_lite0.keras")
        heat, probs = cam.heat_map(crop_rgb, class_id=3)  # (S, S) float in [0, 1]; the model's probabilities
        picture = overlay_heat_map(crop_rgb, heat)        # RGB, for the review page
    """

    def __init__(self, path: str | Path):
        import keras  # TensorFlow loads only when heat maps are asked for

        from hv.model import BACKBONE_LAYER, member_models

        path = Path(path)
        try:
            model = keras.saving.load_model(path, compile=False)
            # (backbone, head layers) of each run: one for a trained model, each member for an average of runs
            self._members = [(member.get_layer(BACKBONE_LAYER), [member.get_layer(name) for name in _HEAD_LAYERS])
                             for member in member_models(model)]
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{path}: not a HematoVision Keras model ({exc})") from exc
        self.path = path
        self.image_size = int(model.input_shape[1])

    def heat_map(self, crop_rgb: np.ndarray, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(S, S) heat map in [0, 1] of the evidence for ``class_id`` in one (S, S, 3) uint8 RGB crop,
        and the Keras model's probabilities for the crop (the page shows both).

        For an average of runs, each run's map is scaled to [0, 1] and the maps are averaged, as
        its answer is their answers' mean."""
        if crop_rgb.shape[:2] != (self.image_size, self.image_size):
            crop_rgb = cv2.resize(crop_rgb, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        batch = to_model_batch(crop_rgb[None])
        maps, probs = zip(*(self._member_heat_map(batch, backbone, head, class_id) for backbone, head in self._members))
        return np.mean(maps, axis=0), np.mean(probs, axis=0)

    def _member_heat_map(self, batch: np.ndarray, backbone, head: list, class_id: int) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        features = backbone(tf.constant(batch), training=False)
        with tf.GradientTape() as tape:
            tape.watch(features)
            x = features
            for layer in head:
                x = layer(x, training=False)
            score = x[:, class_id]
        grads = tape.gradient(score, features)
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))[0].numpy()
        cam = cv2.resize(cam, (self.image_size, self.image_size), interpolation=cv2.INTER_CUBIC).clip(0, None)
        top = float(cam.max())
        return (cam / top if top > 0 else cam), x[0].numpy()


def overlay_heat_map(crop_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The crop with the heat map over it (JET colours: red = strongest evidence), RGB uint8."""
    heat = cv2.resize(heat.astype(np.float32), (crop_rgb.shape[1], crop_rgb.shape[0]))
    colours = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    return cv2.addWeighted(crop_rgb, 1 - alpha, colours, alpha, 0)


def find_source_model(model_path: str | Path, candidates: list[Path]) -> tuple[Path | None, str]:
    """The Keras model to explain ``model_path`` with, and why (for the page when there is none).

    A ``.keras`` model explains itself. An app package's ``model.json`` names the sha256 of the
    Keras model it was exported from; the first candidate file with that sha256 is used, so a
    heat map never comes from another model than the one that classified.
    """
    model_path = Path(model_path)
    if model_path.suffix == ".keras":
        return model_path, f"Grad-CAM of {model_path.name}"
    description_path = model_path.parent / "model.json"
    source = json.loads(description_path.read_text()).get("source_model") if description_path.is_file() else None
    if not source:
        return None, (f"no heat maps: {model_path.name} does not name the Keras model it came from "
                      "(re-export it with hv export, or serve the .keras model)")
    for candidate in candidates:
        if candidate.is_file() and file_sha256(candidate) == source["sha256"]:
            return candidate, f"Grad-CAM of {candidate.name}, the Keras model this package was exported from"
    return None, (f"no heat maps: the Keras model this package came from ({source['name']}, sha256 "
                  f"{source['sha256'][:12]}…) is not here; pass it with --explain-model")


def load_explainer(model: str | Path, explain_model: str | Path | None = None) -> tuple[GradCam | None, str]:
    """The Review page's heat-map model for ``model``: ``explain_model`` if given, else the checkout's
    Keras model when it is the one ``model`` was exported from; and a line that says which, or why none."""
    from hv.bundled import CHECKOUT_KERAS_MODEL

    path, note = find_source_model(model, [Path(explain_model)] if explain_model else [CHECKOUT_KERAS_MODEL])
    if path is None:
        log.warning("Review page: %s", note)
        return None, note
    return GradCam(path), note
