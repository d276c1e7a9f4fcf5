"""One geometry from training to use: the training scale of each resize policy, and back."""

import numpy as np
import pytest

from fcnlab.seg.geometry import (mask_to_training_scale, pad_to_multiple, probabilities_to_size,
                                 to_training_scale, training_scale_size)


@pytest.mark.parametrize("policy, size, expected", [
    ("square", 128, (128, 128)),
    ("keep_aspect", 512, (512, 427)),      # 600 x 500: longer side to 512, aspect kept
    ("none", 512, (600, 500)),
])
def test_training_scale_of_each_policy(policy, size, expected):
    assert training_scale_size(600, 500, policy, size) == expected


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="stretch"):
        training_scale_size(10, 10, "stretch", 32)


def test_images_and_masks_reach_the_same_training_size_and_masks_stay_binary():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)
    mask = (rng.random((90, 60)) < 0.5).astype(np.uint8)
    scaled_image = to_training_scale(image, "keep_aspect", 64)
    scaled_mask = mask_to_training_scale(mask, "keep_aspect", 64)
    assert scaled_image.shape == (64, 43, 3) and scaled_mask.shape == (64, 43)
    assert set(np.unique(scaled_mask)) <= {0, 1}


def test_probabilities_resize_back_to_the_image_size_within_0_1():
    probs = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    back = probabilities_to_size(probs, 90, 60)
    assert back.shape == (90, 60) and back.dtype == np.float32
    assert 0 <= back.min() and back.max() <= 1
    assert probabilities_to_size(probs, 64, 64) is probs


def test_padding_to_32_keeps_the_image_in_its_top_left_corner():
    image = np.arange(40 * 50 * 3, dtype=np.uint8).reshape(40, 50, 3)
    padded = pad_to_multiple(image)
    assert padded.shape == (64, 64, 3)
    np.testing.assert_array_equal(padded[:40, :50], image)
