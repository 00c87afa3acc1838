import numpy as np
import pytest

from training.metrics import (
    accuracy_interval,
    accuracy_per_group,
    classification_metrics,
    group_members,
    wilson_interval,
)


def test_metrics_from_a_known_confusion():
    true = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3, 3])
    pred = np.array([0, 0, 0, 3, 1, 2, 2, 3, 3, 0])
    m = classification_metrics(true, pred)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["n_images"] == 10
    eos = m["per_class"]["eosinophil"]
    assert eos["precision"] == pytest.approx(3 / 4) and eos["recall"] == pytest.approx(3 / 4)
    assert eos["support"] == 4
    assert m["per_class"]["monocyte"]["precision"] == pytest.approx(0.5)
    assert m["confusion_matrix"][3] == [1, 0, 0, 2, 0]  # the fifth column: flagged "other"
    f1s = [c["f1"] for c in m["per_class"].values()]
    assert m["macro_f1"] == pytest.approx(np.mean(f1s))


def test_wilson_interval():
    low, high = wilson_interval(60, 71)
    assert 0.73 < low < 0.75 and 0.91 < high < 0.93
    assert wilson_interval(0, 0) == (0.0, 0.0)
    assert wilson_interval(10, 10)[1] == 1.0


def test_copies_of_one_original_widen_the_interval():
    # 20 originals, 10 copies each, 14 originals right and 6 wrong in every copy: 70 % of 200 images.
    groups = [f"g{i}" for i in range(20) for _ in range(10)]
    true = np.zeros(200, int)
    pred = np.array([0 if i < 14 else 1 for i in range(20) for _ in range(10)])
    (low, high), method = accuracy_interval(groups, true, pred)
    wilson_low, wilson_high = wilson_interval(140, 200)
    assert method == "bootstrap over 20 original fields"
    assert low < 0.7 < high and high - low > 2 * (wilson_high - wilson_low)  # about sqrt(10) wider

    # One image per cell: Wilson; cells outside the four are not part of the accuracy.
    interval, method = accuracy_interval([f"c{i}" for i in range(201)], np.append(true, 4), np.append(pred, 4))
    assert method == "Wilson, one image per cell" and interval == pytest.approx(list(wilson_interval(140, 200)))


def test_every_original_weighs_alike_however_many_copies():
    # One original with 9 copies all right, one with a single copy wrong: 90 % by image, 50 % by original.
    groups = ["big"] * 9 + ["small"]
    correct = np.array([1.0] * 9 + [0.0])
    assert group_members(groups) == {"big": list(range(9)), "small": [9]}
    assert correct.mean() == pytest.approx(0.9)
    assert accuracy_per_group(groups, correct) == pytest.approx(0.5)
