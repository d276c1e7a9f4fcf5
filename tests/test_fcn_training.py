"""FCN training: the frozen-encoder feature cache trains the same weights as the plain fit."""

import keras
import numpy as np

from fcnlab.fcn import fcn8s_vgg16
from fcnlab.fcn_training import (encoder_features_model, encoder_is_frozen, head_model, one_hot_masks,
                                 predict_foreground, train_fcn)
from fcnlab.reproducibility import seed_everything


def tiny_data(n=6, size=64, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = (images.mean(-1) > 127).astype(np.uint8)
    return images, masks


def trained_weights(cache: bool, freeze: bool = True):
    seed_everything(0)
    model = fcn8s_vgg16(head_width=8, freeze_encoder=freeze)
    images, masks = tiny_data()
    train_fcn(model, images[:4], masks[:4], images[4:], masks[4:], epochs=2, batch_size=2,
              learning_rate=1e-3, cache_encoder_features=cache)
    return model, [w.numpy() for w in model.weights]


def test_one_hot_masks_puts_foreground_in_channel_one():
    one_hot = one_hot_masks(np.array([[0, 1], [1, 0]], np.uint8))
    assert one_hot.shape == (2, 2, 2) and one_hot.dtype == np.float32
    np.testing.assert_array_equal(one_hot[..., 1], [[0, 1], [1, 0]])
    np.testing.assert_array_equal(one_hot.sum(-1), 1)


def test_head_on_encoder_features_equals_the_whole_model():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=8)
    images, _ = tiny_data(n=2, size=64)
    x = images.astype(np.float32)
    whole = model.predict(x, verbose=0)
    split = head_model(model).predict(encoder_features_model(model).predict(x, verbose=0), verbose=0)
    np.testing.assert_allclose(split, whole, atol=1e-6)


def test_encoder_is_frozen_follows_freeze_encoder():
    assert encoder_is_frozen(fcn8s_vgg16(head_width=4, freeze_encoder=True))
    assert not encoder_is_frozen(fcn8s_vgg16(head_width=4, freeze_encoder=False))


def test_cached_training_learns_the_same_weights_as_fitting_the_whole_model():
    _, cached = trained_weights(cache=True)
    _, plain = trained_weights(cache=False)
    assert len(cached) == len(plain)
    for a, b in zip(cached, plain):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_training_changes_only_the_head_when_the_encoder_is_frozen():
    seed_everything(0)
    before = {w.path: w.numpy() for w in fcn8s_vgg16(head_width=8).weights}
    model, _ = trained_weights(cache=True)
    changed = {w.path for w in model.weights if not np.array_equal(w.numpy(), before[w.path])}
    assert changed and all(not path.startswith(("block", "vgg_preprocess")) for path in changed)


def test_predict_foreground_returns_channel_one_probabilities():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=4)
    images, _ = tiny_data(n=2, size=32)
    probs = predict_foreground(model, images)
    assert probs.shape == (2, 32, 32) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, model.predict(images.astype(np.float32), verbose=0)[..., 1])
