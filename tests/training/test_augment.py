import cv2
import numpy as np
import pytest
import tensorflow as tf

from hv.config import AugmentConfig
from tests.conftest import draw_field
from training.augment import RGB_FROM_HED, RandomBlur, RandomGrain, RandomStain, build_augmenter
from training.pipeline import balanced_batches


def _crops(n=8, size=48):
    rng = np.random.default_rng(0)
    return np.stack([draw_field(rng, i % 4, width=size, height=size) for i in range(n)]).astype(np.float32)


def _optical_density(rgb):
    return -np.log((rgb + 1.0) / 256.0)


def test_stain_jitter_stays_within_its_configured_range():
    crops = _crops()
    scale, shift, balance = 0.25, 0.05, 0.15
    out = np.asarray(RandomStain(scale, shift, balance, seed=3)(crops, training=True))
    assert out.shape == crops.shape and out.min() >= 0 and out.max() <= 255
    assert np.abs(out - crops).mean() > 2  # it does change the colours
    # Per image, each channel's mean optical density moves by at most what the factors allow:
    # stain amounts by (1 ± scale) and ± shift, then a gain of (1 ± balance) on the intensity.
    density_in, density_out = _optical_density(crops), _optical_density(out)
    bound = scale * density_in.mean(axis=(1, 2)) + 3 * shift + np.log(1 + balance) + 0.05
    assert (np.abs(density_out.mean(axis=(1, 2)) - density_in.mean(axis=(1, 2))) <= bound).all()


def test_zero_jitter_is_the_identity_and_inference_is_untouched():
    crops = _crops(2)
    assert np.allclose(RandomStain(0, 0, 0)(crops, training=True), crops, atol=1e-3)
    assert np.array_equal(RandomStain(0.5, 0.1, 0.3)(crops, training=False), crops)


def _stained(amounts, size=16):
    """Images of one stain each: amount x that stain's optical density vector, as RGB."""
    density = np.asarray(amounts, np.float32)[:, None, None, None] * RGB_FROM_HED[:, None, None, :]
    return np.broadcast_to(256.0 * np.exp(-density) - 1.0, (3, size, size, 3)).astype(np.float32)


def test_nucleus_hue_turns_the_nucleus_stain_alone_at_the_same_depth():
    images = _stained([0.8, 0.8, 0.3])  # haematoxylin alone, eosin alone, the residual alone
    layer = RandomStain(0, 0, 0, nucleus_hue=1.0, seed=1)
    turned = [np.asarray(layer(images, training=True)) for _ in range(8)]
    density_in = _optical_density(images)
    for out in turned:
        assert out.min() >= 0 and out.max() <= 255
        # Eosin and the residual keep their colour: granule colour still tells eosinophil from neutrophil.
        assert np.allclose(out[1:], images[1:], atol=0.05)
        # The nucleus stain takes another hue at the same depth: its density summed over the channels stays.
        assert np.isclose(_optical_density(out[0]).sum(-1).mean(), density_in[0].sum(-1).mean(), atol=1e-3)
    # ... and does change colour, by a different turn each draw.
    hues = [cv2.cvtColor(out[:1, :1, :1].astype(np.uint8).reshape(1, 1, 3), cv2.COLOR_RGB2HSV)[0, 0, 0]
            for out in turned]
    assert len(set(int(h) for h in hues)) > 3
    assert np.abs(np.stack(turned)[:, 0] - images[0]).max() > 30
    assert np.allclose(RandomStain(0, 0, 0, nucleus_hue=0.0)(images, training=True), images, atol=0.05)


def test_nucleus_hue_turns_no_further_than_configured():
    images = _stained([0.8, 0.8, 0.3])
    grey = np.full(3, 1 / np.sqrt(3))

    def across_grey(density):  # the part of an optical density vector that is colour, not depth
        return density - (density @ grey) * grey

    before = across_grey(_optical_density(images[0, 0, 0]))
    layer = RandomStain(0, 0, 0, nucleus_hue=0.1, seed=2)  # up to a tenth of half a turn: 18 degrees
    turns = []
    for _ in range(20):
        after = across_grey(_optical_density(np.asarray(layer(images, training=True))[0, 0, 0]))
        cosine = after @ before / np.linalg.norm(after) / np.linalg.norm(before)
        turns.append(np.degrees(np.arccos(np.clip(cosine, -1, 1))))
    assert max(turns) <= 18.5 and max(turns) > 5


def test_blur_is_a_gaussian_of_a_width_within_its_range():
    layer = RandomBlur(max_sigma=2.5, seed=0)
    expected = cv2.getGaussianKernel(2 * layer.radius + 1, 1.7)[:, 0]
    assert np.allclose(np.asarray(layer.kernel(1.7)), expected, atol=1e-6)
    crops = _crops(size=64)
    sharpness = [cv2.Laplacian(c.mean(-1), cv2.CV_32F).var() for c in crops]
    for _ in range(3):  # a sigma of its own per batch, never wider than 2.5
        out = np.asarray(layer(crops, training=True))
        assert out.shape == crops.shape
        assert np.allclose(out.mean(axis=(1, 2)), crops.mean(axis=(1, 2)), atol=2.0)  # no colour or brightness change
        blurred = [cv2.Laplacian(c.mean(-1), cv2.CV_32F).var() for c in out]
        widest = [cv2.Laplacian(cv2.GaussianBlur(c, (0, 0), 2.6).mean(-1), cv2.CV_32F).var() for c in crops]
        assert all(w <= b <= s + 1e-3 for w, b, s in zip(widest, blurred, sharpness))
    flat = np.full((2, 32, 32, 3), 200.0, np.float32)  # reflected at the border: the edge does not darken
    assert np.allclose(np.asarray(layer(flat, training=True)), 200.0, atol=1e-3)
    assert np.array_equal(np.asarray(layer(crops, training=False)), crops)
    assert np.array_equal(np.asarray(RandomBlur(0.0)(crops, training=True)), crops)


def test_grain_is_noise_of_a_strength_within_its_range_on_about_half_the_images():
    flat = np.full((64, 48, 48, 3), 128.0, np.float32)  # mid-grey: the clip never bites
    layer = RandomGrain(max_sigma=10.0, seed=0)
    spreads, neighbours = [], []
    for _ in range(6):  # each batch draws fine or coarse grain
        out = np.asarray(layer(flat, training=True)) - 128.0
        inner = out[:, 8:-8, 8:-8]  # (the enlarged grain's outermost pixels keep a drawn value's full spread)
        spreads.append(inner.std(axis=(1, 2, 3)))
        grey = inner.mean(-1)
        noisy = grey.std(axis=(1, 2)) > 0.5
        if noisy.any():  # the correlation of horizontal neighbours: ~0 fine, ~0.5 coarse (enlarged twice)
            a, b = grey[noisy, :, :-1].ravel(), grey[noisy, :, 1:].ravel()
            neighbours.append(float(np.corrcoef(a, b)[0, 1]))
        assert np.allclose(out.mean(axis=(1, 2, 3)), 0.0, atol=2.0)  # no brightness change (sampling: ~0.4)
    spreads = np.concatenate(spreads)
    assert spreads.max() <= 10.0 * 1.12  # never over max_sigma (but for its sample's spread: 2-4 % here)
    assert 0.3 <= float((spreads > 0.05).mean()) <= 0.7  # about half the images noisy, the rest untouched
    assert float((spreads <= 0.05).mean()) > 0 and np.all(spreads[spreads <= 0.05] == 0.0)
    assert min(neighbours) < 0.1 and max(neighbours) > 0.3  # both grain sizes were drawn
    crops = _crops()
    assert np.array_equal(np.asarray(layer(crops, training=False)), crops)
    assert np.array_equal(np.asarray(RandomGrain(0.0)(crops, training=True)), crops)
    assert isinstance(build_augmenter(AugmentConfig(grain=8.0), 0).layers[-1], RandomGrain)  # last: the camera
    assert not any(isinstance(x, RandomGrain) for x in build_augmenter(AugmentConfig(), 0).layers)


def test_augmentation_never_changes_a_label():
    crops, labels = _crops(), np.eye(5, dtype=np.float32)[[0, 1, 2, 3, 4, 0, 1, 2]]
    pairs = tf.data.Dataset.from_tensor_slices((crops, labels))
    groups = [f"lab|{int(y.argmax())}" for y in labels]
    plain = list(balanced_batches(pairs, groups, 4, seed=0))
    augmenter = build_augmenter(AugmentConfig(blur=2.0, grain=8.0), 0)
    augmented = list(balanced_batches(pairs, groups, 4, seed=0, augmenter=augmenter))
    assert sum(len(x) for x, _ in plain) == 8
    for (x_plain, y_plain), (x_aug, y_aug) in zip(plain, augmented):  # the same draw, with and without
        assert np.array_equal(y_plain, y_aug) and not np.allclose(x_plain, x_aug)
        for image, label in zip(np.asarray(x_plain), np.asarray(y_plain)):
            source = int(np.flatnonzero((crops == image).all(axis=(1, 2, 3)))[0])
            assert np.array_equal(labels[source], label)  # each image keeps its own label


@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_batches_give_each_class_and_lab_its_share(seed):
    # Lab a: 90 images of class 0, 10 of class 1; lab b: 20 of class 1 only.
    labels = [0] * 90 + [1] * 10 + [1] * 20
    sources = ["a"] * 100 + ["b"] * 20
    ids = np.arange(len(labels), dtype=np.float32)[:, None]
    pairs = tf.data.Dataset.from_tensor_slices((ids, np.eye(5, dtype=np.float32)[labels]))
    groups = [f"{s}|{y}" for s, y in zip(sources, labels)]
    batches = balanced_batches(pairs, groups, 20, seed=seed)
    epochs = [np.concatenate([np.asarray(x)[:, 0] for x, _ in batches]).astype(int) for _ in range(10)]
    assert all(len(epoch) == 120 for epoch in epochs)  # an epoch is as long as the data
    assert not all(np.array_equal(epochs[0], epoch) for epoch in epochs[1:])  # a new draw each epoch
    drawn = np.concatenate(epochs)
    share = {g: np.mean([groups[i] == g for i in drawn]) for g in sorted(set(groups))}
    # Each class half; class 1 split between the two labs that have it.
    assert share["a|0"] == pytest.approx(0.5, abs=0.05)
    assert share["a|1"] == pytest.approx(0.25, abs=0.05) and share["b|1"] == pytest.approx(0.25, abs=0.05)
