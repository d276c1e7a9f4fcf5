"""Segmentation losses: each equals its NumPy formula, stays finite, and trains a real model."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from fcnlab.seg.arrays import foreground_fraction
from fcnlab.seg.losses import (DICE_SMOOTH, EPSILON, LOSSES, class_weights, rarer_class,
                               segmentation_loss)


def batch(seed=0, n=2, size=5, saturate=False):
    """One-hot truth and softmax probabilities, N x H x W x 2; `saturate` puts exact 0s and 1s in."""
    rng = np.random.default_rng(seed)
    truth = np.eye(2, dtype=np.float32)[(rng.random((n, size, size)) < 0.3).astype(int)]
    logits = rng.normal(scale=3.0, size=(n, size, size, 2)).astype(np.float32)
    if saturate:
        logits[0, 0, :, 0] = 200.0                          # probability exactly 1 and 0
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    return truth, (probs / probs.sum(-1, keepdims=True)).astype(np.float32)


def numpy_crossentropy(truth, probs, weights=(1.0, 1.0)):
    p = np.clip(probs / probs.sum(-1, keepdims=True), EPSILON, 1 - EPSILON)
    pixel = -(truth * np.log(p)).sum(-1)
    return float(((truth * np.asarray(weights)).sum(-1) * pixel).mean())


def numpy_dice(truth, probs):
    t, p = truth[..., 1], probs[..., 1]
    return float(1 - (2 * (t * p).sum() + DICE_SMOOTH) / (t.sum() + p.sum() + DICE_SMOOTH))


def loss_value(name, truth, probs, weights=None, dice_class=1):
    return float(segmentation_loss(name, weights, dice_class)(tf.constant(truth), tf.constant(probs)))


# --- class weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.12, 0.5, 0.03, 0.7, 0.004, 0.0, 1.0])
def test_class_weights_average_one_over_the_masks_pixels(fraction):
    w_background, w_foreground = class_weights(fraction)
    assert (1 - fraction) * w_background + fraction * w_foreground == pytest.approx(1.0)


def test_class_weights_are_inverse_frequencies():
    w_background, w_foreground = class_weights(0.12)
    assert w_foreground / w_background == pytest.approx(0.88 / 0.12)
    assert (w_background, w_foreground) == pytest.approx((0.5 / 0.88, 0.5 / 0.12))
    assert class_weights(0.5) == pytest.approx((1.0, 1.0))


def test_class_weights_cap_the_ratio_for_an_almost_absent_class():
    assert class_weights(0.0) == pytest.approx((1.0, 99.0))
    w_background, w_foreground = class_weights(1e-5)
    assert w_foreground / w_background == pytest.approx(99.0)
    w_background, w_foreground = class_weights(1.0)
    assert w_background / w_foreground == pytest.approx(99.0)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), float("inf")])
def test_class_weights_refuse_a_fraction_outside_zero_one(bad):
    with pytest.raises(ValueError, match="foreground_fraction"):
        class_weights(bad)


def test_foreground_fraction_counts_masks_of_different_sizes():
    masks = [np.ones((2, 3), np.uint8), np.zeros((4, 4), np.uint8)]
    assert foreground_fraction(masks) == pytest.approx(6 / 22)
    assert foreground_fraction(np.array([[0, 1], [1, 1]], np.uint8)) == pytest.approx(0.75)


# --- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("saturate", [False, True])
def test_crossentropy_is_keras_categorical_crossentropy_mean(saturate):
    truth, probs = batch(saturate=saturate)
    keras_mean = float(np.mean(keras.losses.categorical_crossentropy(truth, probs)))
    assert loss_value("crossentropy", truth, probs) == pytest.approx(keras_mean, rel=1e-6)
    expected = numpy_crossentropy(truth, probs)
    assert loss_value("crossentropy", truth, probs) == pytest.approx(expected, rel=1e-5)


def test_weighted_crossentropy_weighs_each_pixel_by_its_true_class():
    truth, probs = batch(seed=1, saturate=True)
    expected = numpy_crossentropy(truth, probs, weights=(0.6, 3.5))
    assert loss_value("weighted_crossentropy", truth, probs, (0.6, 3.5)) == pytest.approx(expected, rel=1e-5)
    assert loss_value("weighted_crossentropy", truth, probs, (1, 1)) == \
        pytest.approx(loss_value("crossentropy", truth, probs), rel=1e-6)


def test_dice_is_one_minus_the_batch_soft_dice_of_the_foreground():
    truth, probs = batch(seed=2)
    assert loss_value("dice", truth, probs) == pytest.approx(numpy_dice(truth, probs), rel=1e-5)
    assert loss_value("dice", truth, truth) == pytest.approx(0.0, abs=1e-6)          # perfect
    all_background = np.eye(2, dtype=np.float32)[np.zeros(truth.shape[:-1], int)]
    no_overlap = 1 - DICE_SMOOTH / (truth[..., 1].sum() + DICE_SMOOTH)               # only s/(T+s) left
    assert loss_value("dice", truth, all_background) == pytest.approx(no_overlap, rel=1e-6)


def test_dice_of_a_batch_without_foreground_predicted_empty_is_zero():
    empty = np.eye(2, dtype=np.float32)[np.zeros((2, 4, 4), int)]
    assert loss_value("dice", empty, empty) == pytest.approx(0.0)


@pytest.mark.parametrize("fraction, expected", [(0.22, 1), (0.5, 1), (0.78, 0), (0.0, 1), (1.0, 0)])
def test_the_dice_scores_the_rarer_class_of_the_training_masks(fraction, expected):
    assert rarer_class(fraction) == expected


@pytest.mark.parametrize("name", ["dice", "crossentropy_dice"])
def test_dice_on_the_background_scores_inverted_masks_as_the_foreground_dice_scores_the_masks(name):
    """Masks that are mostly foreground (ISBI cells) with the Dice on class 0 get the loss that
    their inverted masks (the membranes) get with the Dice on class 1: they train alike."""
    truth, probs = batch(seed=6)
    swapped_truth, swapped_probs = truth[..., ::-1].copy(), probs[..., ::-1].copy()
    on_background = loss_value(name, truth, probs, dice_class=0)
    assert on_background == pytest.approx(loss_value(name, swapped_truth, swapped_probs, dice_class=1), rel=1e-6)
    assert on_background != pytest.approx(loss_value(name, truth, probs, dice_class=1), rel=1e-3)
    all_foreground = np.eye(2, dtype=np.float32)[np.ones(truth.shape[:-1], int)]
    mostly_foreground = swapped_truth                       # ~70 % foreground: "all foreground" is close
    assert loss_value("dice", mostly_foreground, all_foreground, dice_class=1) < 0.2
    assert loss_value("dice", mostly_foreground, all_foreground, dice_class=0) > 0.9


def test_crossentropy_dice_is_their_sum():
    truth, probs = batch(seed=3)
    expected = numpy_crossentropy(truth, probs) + numpy_dice(truth, probs)
    assert loss_value("crossentropy_dice", truth, probs) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_bfloat16_probabilities_are_scored_in_float32(name):
    truth, probs = batch(seed=4)
    weights = (0.7, 2.0) if name == "weighted_crossentropy" else None
    loss = segmentation_loss(name, weights)
    low = tf.cast(tf.constant(probs), tf.bfloat16)
    value = loss(tf.constant(truth), low)
    assert value.dtype == tf.float32
    expected = loss(tf.constant(truth), tf.cast(low, tf.float32))
    assert float(value) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_gradients_are_finite_even_for_saturated_probabilities(name):
    truth, _ = batch(seed=5)
    logits = tf.Variable(np.random.default_rng(5).normal(scale=100.0, size=truth.shape).astype(np.float32))
    loss = segmentation_loss(name, (0.6, 3.5) if name == "weighted_crossentropy" else None)
    with tf.GradientTape() as tape:
        value = loss(tf.constant(truth), tf.nn.softmax(logits))
    gradient = tape.gradient(value, logits).numpy()
    assert np.isfinite(float(value)) and np.isfinite(gradient).all()
    assert np.abs(gradient).max() > 0


def test_losses_refuse_unknown_names_and_misplaced_weights():
    with pytest.raises(ValueError, match="loss must be one of"):
        segmentation_loss("focal")
    with pytest.raises(ValueError, match="weighted_crossentropy only"):
        segmentation_loss("weighted_crossentropy")
    with pytest.raises(ValueError, match="weighted_crossentropy only"):
        segmentation_loss("dice", (1.0, 2.0))
    with pytest.raises(ValueError, match="two positive numbers"):
        segmentation_loss("weighted_crossentropy", (1.0, -2.0))
    with pytest.raises(ValueError, match="dice_class must be 0"):
        segmentation_loss("dice", dice_class=2)


# --- in a real model ----------------------------------------------------------------------------


def tiny_segmenter(policy="float32"):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", dtype=policy)(inputs)
    outputs = keras.layers.Conv2D(2, 1, activation="softmax", dtype=policy)(x)
    return keras.Model(inputs, outputs)


def tiny_data():
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype(np.float32)
    return x, np.eye(2, dtype=np.float32)[(x[..., 0] > 0.8).astype(int)]     # ~20 % foreground


@pytest.mark.parametrize("name", LOSSES)
def test_each_loss_lowers_itself_in_a_mixed_precision_fit(name):
    x, y = tiny_data()
    model = tiny_segmenter("mixed_bfloat16")
    weights = class_weights(float(y[..., 1].mean())) if name == "weighted_crossentropy" else None
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=segmentation_loss(name, weights))
    losses = model.fit(x, y, batch_size=4, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]


def test_a_model_compiled_with_a_loss_saves_and_loads_safely(tmp_path):
    x, y = tiny_data()
    model = tiny_segmenter()
    model.compile(optimizer="adam", loss=segmentation_loss("weighted_crossentropy", (0.6, 3.0)))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.loss.kind == "weighted_crossentropy" and loaded.loss.class_weights == (0.6, 3.0)
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


def test_the_dice_class_is_saved_with_the_model(tmp_path):
    x, y = tiny_data()
    model = tiny_segmenter()
    model.compile(optimizer="adam", loss=segmentation_loss("crossentropy_dice", dice_class=0))
    model.optimizer.build(model.trainable_variables)   # saved whole, so loading skips nothing
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert loaded.loss.kind == "crossentropy_dice" and loaded.loss.dice_class == 0
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)
