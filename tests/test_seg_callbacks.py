"""Training control in real fits: validation IoU in the logs, the best epoch kept, early stopping,
and learning-rate schedules that the fused Adam really follows."""

import keras
import numpy as np
import pytest
from keras import ops

from fcnlab.seg.speedups import FusedAdam
from fcnlab.seg.callbacks import (KeepBestEpoch, ValidationIoU, cosine_learning_rate, early_stopping,
                                  lr_schedule_callback, summed_counts)
from fcnlab.seg.metrics import segmentation_metrics
from fcnlab.core.tracking import live_callback

VAL_SIZES = ((12, 20), (16, 16), (20, 10))


def tiny_segmenter():
    """Fully convolutional, so it predicts validation images of any size."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1, activation="softmax")(x))


def pixels(shape, seed):
    return np.random.default_rng(seed).random(shape + (1,)).astype(np.float32)


def truth(images):
    return (images[..., 0] > 0.6).astype(np.uint8)                    # ~40 % foreground


def train_data():
    x = pixels((8, 16, 16), seed=1)
    return x, np.eye(2, dtype=np.float32)[truth(x)]


def validation(model):
    images = [pixels(size, seed=10 + i) for i, size in enumerate(VAL_SIZES)]
    def predict():
        return [ops.convert_to_numpy(model(image[None], training=False))[0, ..., 1] for image in images]

    return predict, [truth(image) for image in images]


class WeightsEachEpoch(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def fit(model, callbacks, epochs, learning_rate=0.05):
    """FusedAdam at a rate high enough that validation IoU rises unevenly (epochs 1-11, seeded:
    0.33 0.43 0.72 0.74 0.67 0.84 0.88 0.88 0.90 0.89 0.90)."""
    x, y = train_data()
    model.compile(optimizer=FusedAdam(learning_rate), loss="categorical_crossentropy")
    return model.fit(x, y, batch_size=4, epochs=epochs, callbacks=callbacks, verbose=0).history


# --- validation IoU -----------------------------------------------------------------------------


def test_validation_iou_logs_the_iou_of_all_validation_pixels_each_epoch():
    model = tiny_segmenter()
    predict, masks = validation(model)
    iou = ValidationIoU(predict, masks)
    history = fit(model, [iou], epochs=3)
    assert len(history["val_mean_iou"]) == 3 and len(history["val_foreground_iou"]) == 3
    flat_truth = np.concatenate([m.ravel() for m in masks])
    flat_pred = np.concatenate([(p > 0.5).ravel() for p in predict()]).astype(np.uint8)
    expected = segmentation_metrics(flat_truth, flat_pred)
    assert history["val_mean_iou"][-1] == expected["mean_iou"]
    assert history["val_foreground_iou"][-1] == expected["iou"]["foreground"]
    assert [row["mean_iou"] for row in iou.history] == history["val_mean_iou"]
    assert history["val_mean_iou"][-1] > history["val_mean_iou"][0]       # it learned something


def test_dvclive_after_validation_iou_records_it_per_epoch(tmp_path):
    model = tiny_segmenter()
    predict, masks = validation(model)
    history = fit(model, [ValidationIoU(predict, masks), live_callback(tmp_path / "live")], epochs=2)
    cells = (tmp_path / "live" / "plots" / "metrics" / "eval" / "mean_iou.tsv").read_text().split()
    assert cells[:2] == ["step", "mean_iou"]                          # then step, value per epoch
    assert [float(value) for value in cells[3::2]] == pytest.approx(history["val_mean_iou"])
    assert (tmp_path / "live" / "plots" / "metrics" / "eval" / "foreground_iou.tsv").is_file()


def test_summed_counts_add_up_images_of_different_sizes():
    masks = [np.array([[1, 0, 0]], np.uint8), np.array([[1], [1]], np.uint8)]
    probs = [np.array([[0.9, 0.7, 0.1]]), np.array([[0.2], [0.6]])]
    assert summed_counts(masks, probs) == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    with pytest.raises(ValueError, match="validation image 1"):
        summed_counts(masks, [probs[0], np.zeros((1, 2))])
    with pytest.raises(ValueError, match="2 validation masks"):
        summed_counts(masks, probs[:1])


def test_validation_iou_refuses_masks_without_foreground():
    with pytest.raises(ValueError, match="no foreground"):
        ValidationIoU(lambda: [], [np.zeros((4, 4), np.uint8)])


# --- best epoch and early stopping --------------------------------------------------------------


def test_keep_best_epoch_restores_the_best_epochs_weights():
    model = tiny_segmenter()
    predict, masks = validation(model)
    keep, snapshots = KeepBestEpoch(), WeightsEachEpoch()
    history = fit(model, [ValidationIoU(predict, masks), keep, snapshots], epochs=5)
    scores = history["val_mean_iou"]
    assert keep.history == scores
    assert keep.best_epoch == int(np.argmax(scores)) + 1 and keep.best_value == max(scores)
    assert keep.best_epoch < 5                          # a dip at the end: restoring did something
    for kept, best in zip(model.get_weights(), snapshots.weights[keep.best_epoch - 1]):
        np.testing.assert_array_equal(kept, best)
    assert not all(np.array_equal(a, b) for a, b in zip(model.get_weights(), snapshots.weights[-1]))


def test_early_stopping_stops_patience_epochs_after_the_best():
    model = tiny_segmenter()
    predict, masks = validation(model)
    keep = KeepBestEpoch()
    history = fit(model, [ValidationIoU(predict, masks), keep, early_stopping(patience=2)], epochs=30)
    assert len(history["val_mean_iou"]) == keep.best_epoch + 2 < 30


def test_keep_best_epoch_says_when_its_metric_is_not_logged_yet():
    model = tiny_segmenter()
    predict, masks = validation(model)
    with pytest.raises(ValueError, match="must come before KeepBestEpoch"):
        fit(model, [KeepBestEpoch(), ValidationIoU(predict, masks)], epochs=1)


def test_keras_early_stopping_cannot_guess_the_direction_of_val_mean_iou():
    model = tiny_segmenter()
    predict, masks = validation(model)
    with pytest.raises(ValueError, match="mode='max'"):
        fit(model, [ValidationIoU(predict, masks), keras.callbacks.EarlyStopping("val_mean_iou")], epochs=1)


# --- learning-rate schedules, with the fused Adam -----------------------------------------------


def steps_per_epoch_of_fused_adam(schedule_callbacks, epochs, learning_rate=0.01):
    """How far one weight moves in each epoch of one step each, under a constant gradient.

    With a constant gradient g, Adam's bias-corrected step is exactly learning_rate x sign(g)
    (m_hat = g, v_hat = g^2), so each epoch's move is the learning rate it ran with.
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=FusedAdam(learning_rate), loss=lambda y_true, y_pred: ops.mean(y_pred))
    snapshots = WeightsEachEpoch()
    start = model.get_weights()[0]
    x, y = np.ones((4, 3), np.float32), np.zeros((4, 2), np.float32)
    history = model.fit(x, y, batch_size=4, epochs=epochs, callbacks=[*schedule_callbacks, snapshots],
                        verbose=0).history
    kernels = [start] + [w[0] for w in snapshots.weights]
    moves = [float(np.abs(b - a).mean()) for a, b in zip(kernels, kernels[1:])]
    return moves, history["learning_rate"], model


@pytest.mark.parametrize("name", ["constant", "cosine"])
def test_per_epoch_schedules_set_the_rate_fused_adam_steps_with(name):
    moves, logged, _ = steps_per_epoch_of_fused_adam([lr_schedule_callback(name, 0.01, epochs=5)], epochs=5)
    expected = [0.01] * 5 if name == "constant" else [cosine_learning_rate(e, 0.01, 5) for e in range(5)]
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
    np.testing.assert_allclose(moves, expected, rtol=1e-3)


def test_cosine_falls_from_the_rate_to_almost_zero():
    rates = [cosine_learning_rate(e, 0.1, 10) for e in range(10)]
    assert rates[0] == 0.1 and all(a > b for a, b in zip(rates, rates[1:]))
    assert rates[-1] == pytest.approx(0.1 * (1 - np.cos(np.pi / 10)) / 2) and rates[-1] < 0.003
    assert cosine_learning_rate(12, 0.1, 10) == pytest.approx(0.0)


def test_plateau_halves_the_rate_when_validation_iou_stops_improving():
    mask = np.array([[1, 0], [0, 0]], np.uint8)
    unchanging = ValidationIoU(lambda: [np.array([[0.9, 0.8], [0.1, 0.1]])], [mask])   # IoU never moves
    plateau = lr_schedule_callback("plateau", 0.01, epochs=4, plateau_factor=0.5, plateau_patience=1)
    moves, logged, model = steps_per_epoch_of_fused_adam([unchanging, plateau], epochs=4)
    expected = [0.01, 0.01, 0.005, 0.0025]        # epoch 1 sets the best; each later one misses it
    np.testing.assert_allclose(logged, expected, rtol=1e-6)
    np.testing.assert_allclose(moves, expected, rtol=1e-3)
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(0.00125)


def test_bad_schedule_settings_are_refused():
    with pytest.raises(ValueError, match="one of constant, cosine, plateau"):
        lr_schedule_callback("step", 0.01, 5)
    with pytest.raises(ValueError, match="learning_rate"):
        lr_schedule_callback("cosine", 0.0, 5)
    with pytest.raises(ValueError, match="plateau_factor"):
        lr_schedule_callback("plateau", 0.01, 5, plateau_factor=1.5)
    with pytest.raises(ValueError, match="patience"):
        early_stopping(0)
