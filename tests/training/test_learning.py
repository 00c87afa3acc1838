"""Training learns: a model trained on the synthetic classes tells them apart on fields it never saw."""

import numpy as np

from hv.classifier import load_classifier
from training.evaluate import evaluate


def test_training_raises_accuracy_far_above_chance(learned_model, tmp_path):
    model_path, config, test_dir = learned_model
    metrics = evaluate(load_classifier(model_path), str(test_dir), config, tmp_path / "eval")
    assert metrics["n_images"] == 40
    assert metrics["accuracy"] >= 0.8  # chance is 0.25
    assert min(c["recall"] for c in metrics["per_class"].values()) >= 0.5  # not one class carried by the rest
    predicted = np.array(metrics["confusion_matrix"]).sum(axis=0)
    assert (predicted[:4] > 0).all()  # every class is predicted somewhere
