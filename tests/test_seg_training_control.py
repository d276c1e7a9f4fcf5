"""Training on real-data terms: windows of images of any sizes, augmentation, the validation IoU
each epoch, the best epoch kept, and the per-epoch rows that say which one."""

from collections import Counter

import keras
import numpy as np
import pytest

from fcnlab.core.reproducibility import seed_everything
from fcnlab.seg.augment import NO_AUGMENTATION, Augmentation
from fcnlab.seg.callbacks import summed_counts
from fcnlab.seg.metrics import metrics_from_counts
from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.seg.predict import predict_images
from fcnlab.seg.shards import load_prepared_split, save_prepared_segmentation
from fcnlab.seg.training import (TrainingControl, draws_per_pass, epoch_rows, train_fcn, training_stream,
                                 training_window)


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


def test_the_training_window_pads_the_largest_image_to_multiples_of_32_and_caps_it_at_the_patch():
    assert training_window([(64, 64)] * 3, None) == (64, 64)
    assert training_window([(512, 495)], 256) == (256, 256)            # the retinal crash: 495 -> windows
    assert training_window([(256, 171)], 256) == (256, 192)            # a 3:2 photo fits one window
    assert training_window([(64, 64), (40, 70)], None) == (64, 96)     # mixed sizes need no patches
    assert training_window([(5, 300)], 128) == (32, 128)
    for size in [(1, 1), (33, 31), (584, 565), (333, 500), (500, 333)]:
        height, width = training_window([size], 160)
        assert height % 32 == width % 32 == 0 and height <= 160 and width <= 160


def test_an_epoch_of_windows_covers_each_image_by_area():
    images = [np.zeros((64, 64, 3)), np.zeros((100, 30, 3))]
    np.testing.assert_array_equal(draws_per_pass(images, (32, 32)), [0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(draws_per_pass(images, (128, 64)), [0, 1])


# --- The training stream, read from shard files --------------------------------------------------


def flat_scenes(sizes):
    """Image i is filled with the value i + 1 (its mask with i % 2): any patch says where it came from."""
    images = [np.full((h, w, 3), i + 1, np.uint8) for i, (h, w) in enumerate(sizes)]
    masks = [np.full((h, w), i % 2, np.uint8) for i, (h, w) in enumerate(sizes)]
    return images, masks


def sharded(tmp_path, images, masks, shard_pixels):
    save_prepared_segmentation(tmp_path / "seg", {"train": zip(images, masks)}, {"resize": "none", "image_size": 64},
                               shard_pixels=shard_pixels)
    return load_prepared_split(tmp_path / "seg", "train").shards


def stream_sources(shards, n_epochs, n_draws, seed=0, window=(32, 32)):
    """Per epoch, the source image index of each element (from its flat value), in stream order."""
    stream = training_stream(shards, 1, seed, window, NO_AUGMENTATION, passes=n_epochs)
    elements = list(stream.unbatch().take(n_epochs * n_draws).as_numpy_iterator())
    sources = []
    for image, mask in elements:
        values = np.unique(image[image > 0])
        assert len(values) == 1                                    # one image's pixels (and zero padding)
        index = int(values[0]) - 1
        inside = image[..., 0] > 0
        assert (mask[..., 1][inside] == index % 2).all() and not mask[..., 1][~inside].any()   # its own mask
        sources.append(index)
    return [sources[e * n_draws:(e + 1) * n_draws] for e in range(n_epochs)]


def test_the_stream_over_several_shards_gives_every_image_once_an_epoch(tmp_path):
    images, masks = flat_scenes([(32, 32)] * 7)
    shards = sharded(tmp_path, images, masks, shard_pixels=2 * 32 * 32)
    assert len(shards) == 4
    epochs = stream_sources(shards, 3, 7)
    assert all(sorted(epoch) == list(range(7)) for epoch in epochs)
    assert epochs[0] != epochs[1] != epochs[2]                     # a new order each epoch
    assert stream_sources(shards, 3, 7) == epochs                  # ... the same one for the same seed
    assert stream_sources(shards, 3, 7, seed=1) != epochs


def test_an_epoch_of_patches_from_shards_draws_each_image_by_area(tmp_path):
    sizes = [(64, 64), (32, 96), (40, 40), (32, 32), (96, 64)]
    images, masks = flat_scenes(sizes)
    shards = sharded(tmp_path, images, masks, shard_pixels=64 * 64)
    draws = draws_per_pass(images, (32, 32))                       # 4, 3, 2, 1, 6 windows
    for epoch in stream_sources(shards, 2, len(draws), window=(32, 32)):
        assert Counter(epoch) == Counter(draws.tolist())


def test_images_smaller_than_the_window_are_padded_with_background_at_a_random_place(tmp_path):
    images, masks = flat_scenes([(20, 50), (45, 64)])
    shards = sharded(tmp_path, images, masks, shard_pixels=64 * 64)
    stream = training_stream(shards, 2, 0, (64, 64), NO_AUGMENTATION, passes=1)
    batch_images, batch_masks = next(iter(stream))
    assert batch_images.shape == (2, 64, 64, 3) and batch_masks.shape == (2, 64, 64, 2)
    for image in batch_images.numpy():
        value = int(image.max())
        assert (image == value).sum() == 3 * {1: 20 * 50, 2: 45 * 64}[value]      # the whole image, once


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


def test_without_keep_best_the_last_epoch_is_kept_and_the_iou_still_measured():
    images, masks = square_scenes([(64, 64)] * 4)
    seed_everything(0)
    record = train_fcn(fcn8s_vgg16(head_width=4), images[:3], masks[:3], images[3:], masks[3:], epochs=2,
                       batch_size=2, learning_rate=1e-3)
    assert record.kept_epoch == 2 and len(record.history["val_mean_iou"]) == 2
    assert "val_loss" not in record.history                   # Keras' own validation pass is not run


def test_steps_per_epoch_caps_an_epoch_and_leaves_a_full_pass_alone():
    images, masks = square_scenes([(64, 64)] * 6)

    def steps(**cap):
        class Count(keras.callbacks.Callback):
            batches = 0

            def on_train_batch_end(self, batch, logs=None):
                Count.batches += 1
        seed_everything(0)
        train_fcn(fcn8s_vgg16(head_width=4), images[:5], masks[:5], images[5:], masks[5:], epochs=2,
                  batch_size=2, learning_rate=1e-3, callbacks=[Count()], **cap)
        return Count.batches

    assert steps() == 2 * 3                                  # ceil(5 / 2) batches an epoch
    assert steps(steps_per_epoch=1) == 2
    assert steps(steps_per_epoch=50) == 2 * 3                # never more than a full pass


def test_a_model_stuck_at_the_all_background_baseline_is_reported_while_it_trains(capfd):
    images, masks = square_scenes([(64, 64)] * 4)
    seed_everything(0)
    model = fcn8s_vgg16(head_width=4)
    model.get_layer("up8_softmax").bias.assign(np.array([50.0, -50.0], np.float32))   # always background
    record = train_fcn(model, images[:3], masks[:3], images[3:], masks[3:], epochs=2, batch_size=2,
                       learning_rate=1e-9)
    err = capfd.readouterr().err
    assert record.history["val_at_baseline"] == [1.0, 1.0]
    assert "warning: train-fcn: epoch 2: validation mean IoU" in err and "all-background baseline" in err
    assert "epoch 1:" not in err                              # the first epoch is given its chance


def test_bfloat16_training_measures_the_copy_it_trains():
    images, masks = square_scenes([(64, 64)] * 5)
    seed_everything(0)
    record = train_fcn(fcn8s_vgg16(head_width=8), images[:4], masks[:4], images[4:], masks[4:], epochs=3,
                       batch_size=2, learning_rate=3e-3, precision="bfloat16",
                       control=TrainingControl(keep_best=True))
    assert len(set(record.history["val_mean_iou"])) > 1      # the measured weights move as training goes
    assert keras.backend.floatx() == "float32"
