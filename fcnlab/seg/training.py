"""Train FCN-8s: one input pipeline for every configuration, the validation IoU measured every
epoch, the best epoch's weights kept.

Data. Training reads a stream (`training_stream`) from prepare-seg's shard files
(`fcnlab.seg.shards`) with tf.data's own file ops, about two shards at a time, so memory does
not grow with the training split: each pass a new seeded order of the shards and of the images
within each; each image cut to one training window at a random place; then the seeded joint
augmentation of `fcnlab.seg.augment`. Same seed and shards, same batches, byte for byte. Images
given as arrays (tests, benchmarks) are first written as shards to a temporary folder.

Geometry. Every example has one size, the training window (`training_window`): the largest
training image padded up to multiples of 32 (FCN-8s halves its input five times), capped at
`patch_size` on each side. An image larger than the window gives random windows of itself (as
many per pass as its area needs); a smaller one is padded with zeros (background in its mask)
at a random place. So any mix of sizes and aspect ratios trains, and every batch the network
sees has sides that divide by 32. Validation predicts whole images through
`fcnlab.seg.predict.predict_images`, which pads and crops by the same rule.

Control. After every epoch the validation images are predicted whole (at the training scale,
as evaluate-iou predicts) and their mean IoU goes into the epoch's logs as val_mean_iou
(`fcnlab.seg.callbacks`); a model still at a do-nothing baseline is reported while it trains;
the weights of the best epoch are kept, training stops early after `patience` epochs without
improvement, and the learning rate follows a schedule.

Speed. The model is trained through `fast_twin` (`fcnlab.seg.speedups`: conv6 without its zero
padding, Adam's update fused into one pass), made of `model`'s own layers, so `model` itself
stays the seed's plain network. precision "bfloat16" (param `fcn.precision`) is Keras' mixed
precision: float32 weights, bfloat16 products; it changes the numbers slightly. The seed's own
training loop (plain `model.fit` on NumPy arrays) is kept as the reference in
bench/fcn_benchmark.py.
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnlab.seg.arrays import foreground_fraction
from fcnlab.seg.augment import NO_AUGMENTATION, Augmentation, augment_dataset
from fcnlab.seg.callbacks import (DoNothingWatch, KeepBestEpoch, ValidationIoU, early_stopping,
                                  lr_schedule_callback)
from fcnlab.seg.geometry import padded_size
from fcnlab.seg.losses import class_weights, rarer_class, segmentation_loss
from fcnlab.seg.predict import predict_images
from fcnlab.seg.shards import load_prepared_split, shards_foreground_fraction, write_split_shards
from fcnlab.seg.speedups import FusedAdam, check_precision, fast_twin, with_dtype_policy

TEMPORARY_SHARD_PIXELS = 16_000_000  # shards written for images given as arrays
VALIDATION_CHUNK = 64                # validation images predicted at a time for the per-epoch IoU


@dataclass
class TrainingControl:
    """What steers a run besides the data: all of it off is the seed's plain training."""

    loss: str = "crossentropy"            # fcnlab.seg.losses.LOSSES
    patch_size: int | None = None         # cap on the training window's sides (training_window)
    augmentation: Augmentation = NO_AUGMENTATION
    keep_best: bool = False               # restore the best epoch's weights (by val_mean_iou)
    patience: int | None = None           # stop after this many epochs without a better val_mean_iou
    lr_schedule: str = "constant"         # fcnlab.seg.callbacks.LR_SCHEDULES
    seed: int = 0                         # order, windows and augmentation


@dataclass
class TrainingRecord:
    """What happened: per-epoch logs (loss, val_mean_iou, ...), the epochs run, the epoch kept."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    kept_epoch: int = 0                   # 1-based: whose weights the model holds now
    best_epoch: int | None = None         # by val_mean_iou; None when it was not tracked
    best_val_mean_iou: float | None = None


def train_fcn(model, train_images, train_masks, val_images, val_masks, epochs: int,
              batch_size: int, learning_rate: float, callbacks=(), strategy=None,
              precision: str = "float32", control: TrainingControl | None = None, train_shards=None,
              steps_per_epoch: int | None = None) -> TrainingRecord:
    """Fit `model` in place on uint8 images (the model preprocesses them) and 0/1 masks.

    Images and masks are arrays (N x H x W (x 3)) or sequences of arrays of any sizes (prepare-seg's
    splits, read image by image; their shard files `train_shards` are streamed). `control`
    (default: the seed's plain training) sets the loss, window cap, augmentation and the
    validation-IoU control of the module docstring. `steps_per_epoch` caps an epoch at that
    many batches (None: one full pass, `draws_per_pass`).
    precision "bfloat16" trains a copy under Keras' mixed_bfloat16 policy and copies its weights
    back: `model` stays a float32 model.
    The caller seeds TensorFlow first (`seed_everything`). With a `tf.distribute` `strategy`
    (fcnlab.core.distribute), `model` must have been built in its scope and `batch_size` is global.
    """
    import tensorflow as tf

    control = control or TrainingControl()
    check_precision(precision)
    window = training_window([image.shape[:2] for image in train_images], control.patch_size)
    fraction = shards_foreground_fraction(train_shards) if train_shards else foreground_fraction(train_masks)
    weights = class_weights(fraction) if control.loss == "weighted_crossentropy" else None
    with (strategy or tf.distribute.get_strategy()).scope():
        work = model if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        trained = fast_twin(work)
        loss = segmentation_loss(control.loss, weights, dice_class=rarer_class(fraction))
        trained.compile(optimizer=FusedAdam(learning_rate), loss=loss, metrics=["accuracy"])

    controls = _control_callbacks(control, work, val_images, val_masks, learning_rate, epochs, precision)
    full_pass = -(-len(draws_per_pass(train_images, window)) // batch_size)
    with _shard_files(train_images, train_masks, train_shards) as shards:
        stream = training_stream(shards, batch_size, control.seed, window, control.augmentation,
                                 passes=epochs + 1)
        history = trained.fit(stream, steps_per_epoch=min(steps_per_epoch or full_pass, full_pass),
                              epochs=epochs, callbacks=controls + list(callbacks), shuffle=False, verbose=2)
    if work is not model:
        model.set_weights(work.get_weights())
    return _record(history.history, controls)


def training_window(sizes, patch_size: int | None) -> tuple[int, int]:
    """(H, W) of every training example: the largest height and width among `sizes` padded up to
    multiples of 32, each capped at `patch_size` (itself a multiple of 32) when given."""
    if not sizes:
        raise ValueError("no training images")
    height, width = padded_size(max(h for h, _ in sizes), max(w for _, w in sizes))
    if patch_size is None:
        return height, width
    return min(height, patch_size), min(width, patch_size)


@contextlib.contextmanager
def _shard_files(images, masks, shards):
    """`shards` if given, else the images and masks written as shards to a temporary folder."""
    if shards:
        yield list(shards)
        return
    with tempfile.TemporaryDirectory(prefix="fcnlab-shards-") as folder:
        write_split_shards(Path(folder), "train", zip(images, masks), TEMPORARY_SHARD_PIXELS)
        yield load_prepared_split(folder, "train").shards


def _control_callbacks(control: TrainingControl, work, val_images, val_masks, learning_rate: float,
                       epochs: int, precision: str) -> list:
    """ValidationIoU first (the others read its val_mean_iou), the do-nothing watch, then
    best-epoch, early stop, schedule. Without validation images only a schedule can run."""
    if len(val_images) == 0:
        if control.keep_best or control.patience is not None or control.lr_schedule == "plateau":
            raise ValueError("keep_best, patience and the plateau schedule need validation images")
        return [] if control.lr_schedule == "constant" else [
            lr_schedule_callback(control.lr_schedule, learning_rate, epochs)]

    def predict():                      # a chunk of images at a time: memory bounded by the chunk
        for start in range(0, len(val_images), VALIDATION_CHUNK):
            yield from predict_images(work, val_images[start:start + VALIDATION_CHUNK], precision=precision)

    callbacks = [ValidationIoU(predict, val_masks), DoNothingWatch(val_masks)]
    if control.keep_best:
        callbacks.append(KeepBestEpoch())
    if control.patience is not None:
        callbacks.append(early_stopping(control.patience))
    if control.lr_schedule != "constant":
        callbacks.append(lr_schedule_callback(control.lr_schedule, learning_rate, epochs))
    return callbacks


def _record(history: dict, controls: list) -> TrainingRecord:
    record = TrainingRecord(history={key: [float(v) for v in values] for key, values in history.items()},
                            epochs_run=len(next(iter(history.values()), [])))
    keep = next((c for c in controls if isinstance(c, KeepBestEpoch)), None)
    ious = record.history.get("val_mean_iou")
    if ious:
        record.best_epoch = int(np.argmax(ious)) + 1          # the first of equals, as KeepBestEpoch
        record.best_val_mean_iou = max(ious)
    record.kept_epoch = keep.best_epoch if keep is not None and keep.best_epoch else record.epochs_run
    return record


def epoch_rows(record: TrainingRecord) -> list[dict]:
    """One CSV row per epoch run: its logs (loss, val_mean_iou, learning rate, ...) and kept = 1 on
    the epoch whose weights the model holds (the best by val_mean_iou with keep_best, else the last)."""
    keys = sorted(record.history)
    return [{"epoch": epoch, **{key: round(record.history[key][epoch - 1], 6) for key in keys},
             "kept": int(epoch == record.kept_epoch)} for epoch in range(1, record.epochs_run + 1)]


def draws_per_pass(images, window: tuple[int, int]) -> np.ndarray:
    """The image indices one epoch draws from: each image as many times as windows it takes to
    cover its area (ceil(H x W / window area); once if it fits), so an epoch sees about every
    pixel once whatever the window."""
    return _draws(np.array([image.shape[:2] for image in images], np.int64).reshape(-1, 2), window)


def _draws(shapes: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """`draws_per_pass` from the images' (height, width) rows."""
    return np.repeat(np.arange(len(shapes)), -(-shapes[:, 0] * shapes[:, 1] // (window[0] * window[1])))


def training_stream(shards, batch_size: int, seed: int, window: tuple[int, int],
                    augmentation: Augmentation, passes: int):
    """A tf.data stream of (N x H x W x 3 float32 images, N x H x W x 2 one-hot) batches, (H, W)
    the `window`, read from prepare-seg's shard files (`fcnlab.seg.shards.ShardFiles`).

    Each pass (an epoch: `draws_per_pass` of the shards' images) visits the shards in a new
    seeded order, and each shard's draws in a new order drawn from (seed, pass, shard); two
    shards are read at a time and their draws interleaved, so the stream holds about two shards
    whatever the split's size. After `passes` passes it starts again. Each draw is cut (or
    padded) to the window and augmented by `augment_dataset` keyed by `seed`.

    The stream is TensorFlow ops only (the files are read by `tf.io.read_file`, no Python
    generator, whose py_func can stall the input pipeline while a callback predicts).
    """
    import tensorflow as tf

    shards = list(shards)
    if not shards:
        raise ValueError("no training shard to read")
    shapes = np.concatenate([shard.shapes for shard in shards])                    # N x 2, all images
    sizes = shapes[:, 0] * shapes[:, 1]
    firsts = np.cumsum([0] + [len(shard.shapes) for shard in shards])              # first image of each shard
    starts = np.concatenate([np.cumsum(sizes[a:b]) - sizes[a:b] for a, b in zip(firsts[:-1], firsts[1:])])
    draws = [_draws(shard.shapes, window) for shard in shards]                 # local indices
    # image indices, slot after slot: int32 (4 bytes a draw a pass) while they fit, filled in place
    orders = np.empty(passes * sum(len(d) for d in draws), np.int32 if len(shapes) < 2**31 else np.int64)
    schedule, bounds = [], [0]                                                     # per (pass, slot)
    for p in range(passes):
        for k in np.random.default_rng([seed, p, 0, 1]).permutation(len(shards)).tolist():
            # shard 0 keeps the key (seed, pass) of the earlier one-array stream: a one-shard split
            # (the demo) is shuffled exactly as before
            key = [seed, p, k] if k else [seed, p]
            schedule.append(k)
            bounds.append(bounds[-1] + len(draws[k]))
            orders[bounds[-2]:bounds[-1]] = firsts[k] + np.random.default_rng(key).permutation(draws[k])
    bounds = tf.constant(bounds, tf.int64)
    orders = tf.constant(orders)
    schedule = tf.constant(schedule, tf.int64)                      # the shard of each slot
    image_files = tf.constant([str(shard.images) for shard in shards])
    mask_files = tf.constant([str(shard.masks) for shard in shards])
    image_offsets = tf.constant([shard.images_offset for shard in shards], tf.int64)
    mask_offsets = tf.constant([shard.masks_offset for shard in shards], tf.int64)

    def read_shard(slot):
        shard = tf.gather(schedule, slot)
        image_bytes = tf.io.decode_raw(tf.io.read_file(tf.gather(image_files, shard)), tf.uint8)   # header + p x 3
        mask_bytes = tf.io.decode_raw(tf.io.read_file(tf.gather(mask_files, shard)), tf.uint8)     # header + p
        image_offset, mask_offset = tf.gather(image_offsets, shard), tf.gather(mask_offsets, shard)

        def image_and_mask(index):
            start, size, shape = tf.gather(starts, index), tf.gather(sizes, index), tf.gather(shapes, index)
            first = image_offset + 3 * start
            image = tf.reshape(image_bytes[first:first + 3 * size], tf.concat([shape, [3]], axis=0))  # H x W x 3
            mask = tf.reshape(mask_bytes[mask_offset + start:mask_offset + start + size], shape)       # H x W
            return image, mask

        return tf.data.Dataset.from_tensor_slices(orders[bounds[slot]:bounds[slot + 1]]).map(image_and_mask)

    per_pass = len(shards)

    def one_pass(p):
        slots = tf.data.Dataset.range(p * per_pass, (p + 1) * per_pass)
        return slots.interleave(read_shard, cycle_length=min(2, per_pass), block_length=1)

    dataset = tf.data.Dataset.range(passes).flat_map(one_pass).repeat()
    dataset = augment_dataset(dataset, seed, augmentation, window)
    dataset = dataset.map(lambda image, mask: (tf.cast(image, tf.float32), tf.one_hot(tf.cast(mask, tf.int32), 2)))
    return dataset.batch(batch_size).prefetch(1)
