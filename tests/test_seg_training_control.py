"""Training on real-data terms: patches of images of any sizes, augmentation, the validation IoU
each epoch, the best epoch kept, and the per-epoch rows that say which one."""

import keras
import numpy as np
import pytest

from fcnlab.core.reproducibility import seed_everything
from fcnlab.seg.augment import Augmentation
from fcnlab.seg.callbacks import summed_counts
from fcnlab.seg.metrics import metrics_from_counts
from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.seg.predict import predict_images
from fcnlab.seg.training import (TrainingControl, draws_per_pass, epoch_rows, train_fcn,
                                 trains_on_whole_images)


def square_scenes(sizes, seed=0):
    """Bright squares on dark noise, of the given (height, width) sizes: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for height, width in sizes:
        mask = np.zeros((height, width), np.uint8)
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[top:top + height // 2, left:left + width // 2] = 1
        image = rng.integers(0, 60, (height, width, 3)).astype(np.uint8) + (mask[..., None] * 150).astype(np.uint8)
        images.append(image)
        masks.append(mask)
    return images, masks


def val_mean_iou(model, images, masks):
    counts = summed_counts(masks, predict_images(model, images))
    return metrics_from_counts(counts)["mean_iou"]


def test_whole_images_when_they_share_a_size_that_fits_a_patch():
    same = [np.zeros((64, 64, 3))] * 3
    assert trains_on_whole_images(same, None) and trains_on_whole_images(same, 64)
    assert not trains_on_whole_images(same, 32)
    assert not trains_on_whole_images([np.zeros((64, 64, 3)), np.zeros((40, 64, 3))], 32)
    with pytest.raises(ValueError, match="differ in size"):
        trains_on_whole_images([np.zeros((64, 64, 3)), np.zeros((40, 64, 3))], None)


def test_an_epoch_of_patches_covers_each_image_by_area():
    images = [np.zeros((64, 64, 3)), np.zeros((100, 30, 3))]
    np.testing.assert_array_equal(draws_per_pass(images, 32), [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(draws_per_pass(images, None), [0, 1])


def test_patch_training_on_images_of_different_sizes_keeps_the_best_epoch():
    images, masks = square_scenes([(64, 96), (96, 64), (80, 80), (64, 64), (96, 96)])
    val_images, val_masks = square_scenes([(64, 80), (96, 64)], seed=1)
    seed_everything(0)
    model = fcn8s_vgg16(head_width=8, freeze_encoder=False)
    control = TrainingControl(loss="crossentropy_dice", patch_size=64, augmentation=Augmentation(),
                              keep_best=True, lr_schedule="cosine", seed=0)
    record = train_fcn(model, images, masks, val_images, val_masks, epochs=3, batch_size=2,
                       learning_rate=1e-3, control=control)
    ious = record.history["val_mean_iou"]
    assert record.epochs_run == 3 and len(ious) == 3
    assert record.kept_epoch == record.best_epoch == int(np.argmax(ious)) + 1
    # the model holds the kept epoch's weights: its validation IoU is that epoch's
    assert val_mean_iou(model, val_images, val_masks) == pytest.approx(ious[record.kept_epoch - 1], abs=1e-6)
    rows = epoch_rows(record)
    assert [row["kept"] for row in rows] == [int(e == record.kept_epoch) for e in (1, 2, 3)]
    assert rows[0]["learning_rate"] > rows[-1]["learning_rate"]           # cosine


def test_the_same_seed_trains_the_same_weights_through_the_patch_stream():
    images, masks = square_scenes([(64, 96), (96, 64), (80, 80)])
    weights = []
    for _ in range(2):
        seed_everything(0)
        model = fcn8s_vgg16(head_width=4)
        train_fcn(model, images, masks, images[:1], masks[:1], epochs=1, batch_size=2, learning_rate=1e-3,
                  control=TrainingControl(patch_size=32, augmentation=Augmentation(), seed=3))
        weights.append(model.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)


def test_without_control_the_last_epoch_is_kept_and_no_iou_is_measured():
    images, masks = square_scenes([(64, 64)] * 4)
    seed_everything(0)
    record = train_fcn(fcn8s_vgg16(head_width=4), images[:3], masks[:3], images[3:], masks[3:], epochs=2,
                       batch_size=2, learning_rate=1e-3)
    assert record.kept_epoch == 2 and record.best_epoch is None
    assert "val_mean_iou" not in record.history and "val_loss" in record.history


def test_bfloat16_training_measures_the_copy_it_trains():
    images, masks = square_scenes([(64, 64)] * 5)
    seed_everything(0)
    record = train_fcn(fcn8s_vgg16(head_width=8), images[:4], masks[:4], images[4:], masks[4:], epochs=3,
                       batch_size=2, learning_rate=3e-3, precision="bfloat16",
                       control=TrainingControl(keep_best=True))
    assert len(set(record.history["val_mean_iou"])) > 1      # the measured weights move as training goes
    assert keras.backend.floatx() == "float32"
