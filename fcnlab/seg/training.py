"""Train FCN-8s: Adam and the seed's cross-entropy by default, on whole images or random patches,
augmented, with the validation IoU measured every epoch and the best epoch's weights kept.

Data. Training reads a stream (`training_stream`) from prepare-seg's shard files
(`fcnlab.seg.shards`) with tf.data's own file ops, about two shards at a time, so memory does
not grow with the training split: each pass a new seeded order of the shards and of the images
within each; each image either whole (all the same size) or a random `patch_size` square of it
(images of any sizes, e.g. at their own resolution); then the seeded joint augmentation of
`fcnlab.seg.augment`. Same seed and shards, same batches, byte for byte. Images given as arrays
(tests, benchmarks) are first written as shards to a temporary folder. Only a split of at most
`IN_MEMORY_MAX_PIXELS` is ever stacked in memory: for the plain whole-image path without
augmentation, the frozen-encoder cache below, and Keras' per-epoch val_loss.

Control. After every epoch the validation images are predicted whole (at the training scale,
as evaluate-iou predicts) and their mean IoU goes into the epoch's logs as val_mean_iou
(`fcnlab.seg.callbacks`); the weights of the best epoch by it are kept, training stops early
after `patience` epochs without improvement, and the learning rate follows a schedule.

The frozen-encoder cache. 
With a frozen encoder (the seed's `base_model.trainable = False`), whole
images and no augmentation, the VGG16 features of an image never change during training, so recomputing them every epoch, as the seed's
`model.fit` does, is wasted work. `train_fcn` then computes the three maps the head reads
(pool3, pool4, pool5) once, and fits the head on them:

    image ─► [VGG16, frozen] ─► pool3, pool4, pool5     once, before the first epoch
                                   │
                                   ▼
                                 head ─► probabilities   every epoch (the only trainable part)

The head is made of the very layer objects of the full model, so the weights it learns are
the full model's: the saved `.keras` file is still the whole network, image in, mask out.
Without a frozen encoder there is nothing to cache and the whole model is fitted.

Both paths also use `fcnlab.seg.speedups` (conv6 without its zero padding, Adam's update fused
into one pass) through in-memory twins made of `model`'s own layers, so `model` itself stays the
seed's plain network. Training feeds one endless shuffled tf.data stream (`shuffled_batches`):
fed NumPy arrays, Keras retraces its train function at the start of most epochs.

precision "bfloat16" (param `fcn.precision`) is Keras' mixed precision: float32 weights,
bfloat16 products. Unlike the above it changes the numbers slightly (README, Performance).
"""

from __future__ import annotations

import contextlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnlab.seg.augment import NO_AUGMENTATION, Augmentation, augment_dataset
from fcnlab.seg.callbacks import KeepBestEpoch, ValidationIoU, early_stopping, lr_schedule_callback
from fcnlab.seg.arrays import foreground_fraction
from fcnlab.seg.losses import class_weights, rarer_class, segmentation_loss
from fcnlab.core.batches import predict_in_batches
from fcnlab.seg.predict import predict_images
from fcnlab.seg.shards import load_prepared_split, shards_foreground_fraction, write_split_shards
from fcnlab.seg.speedups import (FusedAdam, check_precision, encoder_features_model, encoder_is_frozen,
                                 fast_twin, head_model, with_dtype_policy)


IN_MEMORY_MAX_PIXELS = 4_000_000    # larger splits are only ever streamed from their shards (README)
TEMPORARY_SHARD_PIXELS = 16_000_000  # shards written for images given as arrays
VALIDATION_CHUNK = 64                # validation images predicted at a time for the per-epoch IoU


@dataclass
class TrainingControl:
    """What steers a run besides the data: all of it off reproduces the seed's plain `fit`."""

    loss: str = "crossentropy"            # fcnlab.seg.losses.LOSSES
    patch_size: int | None = None         # random patch_size squares of larger images (trains_on_whole_images)
    augmentation: Augmentation = NO_AUGMENTATION
    keep_best: bool = False               # restore the best epoch's weights (by val_mean_iou)
    patience: int | None = None           # stop after this many epochs without a better val_mean_iou
    lr_schedule: str = "constant"         # fcnlab.seg.callbacks.LR_SCHEDULES
    threshold: float = 0.5                # foreground probability threshold of the validation IoU
    seed: int = 0                         # order, patches and augmentation


@dataclass
class TrainingRecord:
    """What happened: per-epoch logs (loss, val_mean_iou, ...), the epochs run, the epoch kept."""

    history: dict[str, list[float]] = field(default_factory=dict)
    epochs_run: int = 0
    kept_epoch: int = 0                   # 1-based: whose weights the model holds now
    best_epoch: int | None = None         # by val_mean_iou; None when it was not tracked
    best_val_mean_iou: float | None = None


def one_hot_masks(masks: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """N x H x W masks of class ids -> N x H x W x n float32 one-hot targets (the seed's labels)."""
    return np.eye(n_classes, dtype=np.float32)[masks]


def train_fcn(model, train_images, train_masks, val_images, val_masks, epochs: int,
              batch_size: int, learning_rate: float, callbacks=(), cache_encoder_features: bool = True,
              strategy=None, speedups: bool = True, shuffle: bool = True, precision: str = "float32",
              control: TrainingControl | None = None, train_shards=None) -> TrainingRecord:
    """Fit `model` in place on uint8 images (the model preprocesses them) and 0/1 masks.

    Images and masks are arrays (N x H x W (x 3)) or lists of arrays of any sizes (memory-mapped
    views of prepare-seg's shards, whose files are `train_shards`, stream from those). `control`
    (default: the seed's plain training) sets the loss, patches, augmentation and the
    validation-IoU control of the module docstring. Without validation IoU tracking
    (`keep_best` off, no `patience`, constant rate) the validation split still gives the
    per-epoch `val_loss`/`val_accuracy` curves where its images share one size.
    `speedups=False` fits `model` itself with Keras' Adam, exactly as the seed does (the
    reference the tests compare the fast paths against; `shuffle=False` makes both see the
    batches in the same order).
    precision "bfloat16" trains a copy under Keras' mixed_bfloat16 policy (float32 weights,
    bfloat16 products) and copies its weights back: `model` stays a float32 model.
    The caller seeds TensorFlow first (`seed_everything`). With a `tf.distribute` `strategy`
    (fcnlab.core.distribute), `model` must have been built in its scope and `batch_size` is global.
    """
    import keras
    import tensorflow as tf

    control = control or TrainingControl()
    check_precision(precision)
    whole_images = trains_on_whole_images(train_images, control.patch_size)
    plain = (whole_images and control.augmentation == NO_AUGMENTATION
             and _pixel_count(train_images) <= IN_MEMORY_MAX_PIXELS)
    fraction = shards_foreground_fraction(train_shards) if train_shards else foreground_fraction(train_masks)
    weights = class_weights(fraction) if control.loss == "weighted_crossentropy" else None
    with (strategy or tf.distribute.get_strategy()).scope():
        work = model if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        cached = plain and encoder_is_frozen(work) and cache_encoder_features
        if cached:
            trained = head_model(work, padding_free=speedups)
            features = encoder_features_model(work)
            train_x = predict_in_batches(features, np.stack(train_images), max(batch_size, 8))
        else:
            trained = fast_twin(work) if speedups else work
        optimizer = (FusedAdam if speedups else keras.optimizers.Adam)(learning_rate)
        loss = segmentation_loss(control.loss, weights, dice_class=rarer_class(fraction))
        trained.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])

    val_x = _validation_inputs(val_images, features if cached else None, batch_size)
    controls = _control_callbacks(control, work, val_images, val_masks, learning_rate, epochs, precision)
    fit = dict(epochs=epochs, callbacks=controls + list(callbacks), verbose=2)
    if val_x is not None:
        fit["validation_data"] = (val_x, one_hot_masks(np.stack(val_masks)))
    steps = -(-len(train_masks) // batch_size)
    if not speedups:
        history = trained.fit(np.stack(train_images).astype(np.float32), one_hot_masks(np.stack(train_masks)),
                              batch_size=batch_size, shuffle=shuffle, **fit)
    elif cached:
        batches = shuffled_batches(train_x, one_hot_masks(np.stack(train_masks)), batch_size, shuffle)
        history = trained.fit(batches, steps_per_epoch=steps, shuffle=False, **fit)
    elif plain:
        batches = shuffled_batches(np.stack(train_images).astype(np.float32),
                                   one_hot_masks(np.stack(train_masks)), batch_size, shuffle)
        history = trained.fit(batches, steps_per_epoch=steps, shuffle=False, **fit)
    else:
        patch_size = None if whole_images else control.patch_size
        with _shard_files(train_images, train_masks, train_shards) as shards:
            stream = training_stream(shards, batch_size, control.seed, patch_size, control.augmentation,
                                     passes=epochs + 1)
            steps = -(-len(draws_per_pass(train_images, patch_size)) // batch_size)
            history = trained.fit(stream, steps_per_epoch=steps, shuffle=False, **fit)
    if work is not model:
        model.set_weights(work.get_weights())
    return _record(history.history, controls)


def trains_on_whole_images(images, patch_size: int | None) -> bool:
    """Whole images when they all share one size that fits in a patch (or there are no patches);
    otherwise random patch_size squares. Images of different sizes need patches."""
    sizes = {image.shape[:2] for image in images}
    if len(sizes) == 1:
        height, width = sizes.pop()
        return patch_size is None or (height <= patch_size and width <= patch_size)
    if patch_size is None:
        raise ValueError("the training images differ in size: train on patches (patch_size)")
    return False


def _pixel_count(images) -> int:
    return sum(image.shape[0] * image.shape[1] for image in images)


@contextlib.contextmanager
def _shard_files(images, masks, shards):
    """`shards` if given, else the images and masks written as shards to a temporary folder."""
    if shards:
        yield list(shards)
        return
    with tempfile.TemporaryDirectory(prefix="fcnlab-shards-") as folder:
        write_split_shards(Path(folder), "train", zip(images, masks), TEMPORARY_SHARD_PIXELS)
        yield load_prepared_split(folder, "train").shards


def _validation_inputs(val_images, features, batch_size: int):
    """Inputs for Keras' per-epoch val_loss: the images (or their cached features) when they
    share one size and fit in memory, else None (then only the validation IoU is measured)."""
    if len({image.shape[:2] for image in val_images}) != 1 or _pixel_count(val_images) > IN_MEMORY_MAX_PIXELS:
        return None
    stacked = np.stack(val_images)
    return stacked.astype(np.float32) if features is None else predict_in_batches(features, stacked,
                                                                                   max(batch_size, 8))


def _control_callbacks(control: TrainingControl, work, val_images, val_masks, learning_rate: float,
                       epochs: int, precision: str) -> list:
    """ValidationIoU first (the others read its val_mean_iou), then best-epoch, early stop, schedule."""
    tracked = control.keep_best or control.patience is not None or control.lr_schedule != "constant"
    if not tracked:
        return []
    def predict():                      # a chunk of images at a time: memory bounded by the chunk
        for start in range(0, len(val_images), VALIDATION_CHUNK):
            yield from predict_images(work, val_images[start:start + VALIDATION_CHUNK], precision=precision)
    callbacks = [ValidationIoU(predict, val_masks, control.threshold)]
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


def draws_per_pass(images, patch_size: int | None) -> np.ndarray:
    """The image indices one epoch draws from: each image once whole, or, with patches, as many
    times as patches it takes to cover its area (ceil(H x W / patch_size^2)), so an epoch sees
    about every pixel once whatever the patch size."""
    return _draws(np.array([image.shape[:2] for image in images], np.int64).reshape(-1, 2), patch_size)


def _draws(shapes: np.ndarray, patch_size: int | None) -> np.ndarray:
    """`draws_per_pass` from the images' (height, width) rows."""
    if patch_size is None:
        return np.arange(len(shapes))
    return np.repeat(np.arange(len(shapes)), -(-shapes[:, 0] * shapes[:, 1] // patch_size ** 2))


def training_stream(shards, batch_size: int, seed: int, patch_size: int | None,
                    augmentation: Augmentation, passes: int, pipeline: tuple[int, int] = (0, 1)):
    """A tf.data stream of (N x P x P x 3 float32 images, N x P x P x 2 one-hot) batches, read
    from prepare-seg's shard files (`fcnlab.seg.shards.ShardFiles`).

    Each pass (an epoch: `draws_per_pass` of the shards' images) visits the shards in a new
    seeded order, and each shard's draws in a new order drawn from (seed, pass, shard); two shards are read at a time and their draws interleaved, so the stream holds about
    two shards whatever the split's size. After `passes` passes it starts again. Each image is
    cut to `patch_size` patches and augmented by `augment_dataset` keyed by `seed`. Without
    patches every image must have one size. `pipeline` = (i, n) reads only shards i, i + n, ...:
    one worker's share of a multi-worker run, each reading its own files.

    The stream is TensorFlow ops only (the files are read by `tf.io.read_file`, no Python
    generator, whose py_func can stall the input pipeline while a callback predicts).
    """
    import tensorflow as tf

    shards = list(shards)[pipeline[0]::pipeline[1]]
    if not shards:
        raise ValueError(f"input pipeline {pipeline[0]} of {pipeline[1]} has no shard to read")
    shapes = np.concatenate([shard.shapes for shard in shards])                    # N x 2, all images
    sizes = shapes[:, 0] * shapes[:, 1]
    firsts = np.cumsum([0] + [len(shard.shapes) for shard in shards])              # first image of each shard
    starts = np.concatenate([np.cumsum(sizes[a:b]) - sizes[a:b] for a, b in zip(firsts[:-1], firsts[1:])])
    draws = [_draws(shard.shapes, patch_size) for shard in shards]                 # local indices
    schedule, orders = [], []                                                      # per (pass, slot)
    for p in range(passes):
        for k in np.random.default_rng([seed, p, 0, 1]).permutation(len(shards)).tolist():
            # shard 0 keeps the key (seed, pass) of the earlier one-array stream: a one-shard split
            # (the demo) is shuffled exactly as before
            key = [seed, p, k] if k else [seed, p]
            schedule.append(k)
            orders.append(firsts[k] + np.random.default_rng(key).permutation(draws[k]))
    bounds = tf.constant(np.cumsum([0] + [len(order) for order in orders]), tf.int64)
    orders = tf.constant(np.concatenate(orders), tf.int64)          # image indices, slot after slot
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
    dataset = augment_dataset(dataset, seed, augmentation, patch_size)
    dataset = dataset.map(lambda image, mask: (tf.cast(image, tf.float32), tf.one_hot(tf.cast(mask, tf.int32), 2)))
    return dataset.batch(batch_size).prefetch(1)


def shuffled_batches(inputs, targets: np.ndarray, batch_size: int, shuffle: bool = True):
    """An endless tf.data stream of batches, each pass over the data a new shuffle.

    Given NumPy arrays, Keras' `fit` makes a new iterator every epoch, and its train function
    was then often traced again at the start of an epoch. One endless iterator, with
    `steps_per_epoch` = ceil(N / batch) (one pass, the last batch short), is traced once.
    The order follows TensorFlow's global seed (`seed_everything`).
    """
    import tensorflow as tf

    inputs = tuple(inputs) if isinstance(inputs, list) else inputs
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        dataset = dataset.shuffle(len(targets), reshuffle_each_iteration=True)
    return dataset.batch(batch_size).repeat()
