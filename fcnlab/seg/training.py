"""Train FCN-8s (Adam + categorical cross-entropy + accuracy, as the seed).

With a frozen encoder (the seed's `base_model.trainable = False`) the VGG16 features of an
image never change during training, so recomputing them every epoch, as the seed's
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

import numpy as np

from fcnlab.seg.predict import predict_in_batches
from fcnlab.seg.speedups import (FusedAdam, check_precision, encoder_features_model, encoder_is_frozen,
                                 fast_twin, head_model, with_dtype_policy)


def one_hot_masks(masks: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """N x H x W masks of class ids -> N x H x W x n float32 one-hot targets (the seed's labels)."""
    return np.eye(n_classes, dtype=np.float32)[masks]


def train_fcn(model, train_images, train_masks, val_images, val_masks, epochs: int,
              batch_size: int, learning_rate: float, callbacks=(), cache_encoder_features: bool = True,
              strategy=None, speedups: bool = True, shuffle: bool = True, precision: str = "float32"):
    """Fit `model` in place on uint8 images (the model preprocesses them) and 0/1 masks.

    The validation split gives the per-epoch `val_loss`/`val_accuracy` curves. When every
    encoder layer is frozen and `cache_encoder_features` is true, only the head is run per
    epoch (see the module docstring); the result is the same training, faster.
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

    check_precision(precision)
    with (strategy or tf.distribute.get_strategy()).scope():
        work = model if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        if encoder_is_frozen(work) and cache_encoder_features:
            trained = head_model(work, padding_free=speedups)
            features = encoder_features_model(work)
            train_x = predict_in_batches(features, train_images, max(batch_size, 8))
            val_x = predict_in_batches(features, val_images, max(batch_size, 8))
        else:
            trained = fast_twin(work) if speedups else work
            train_x, val_x = train_images.astype(np.float32), val_images.astype(np.float32)
        optimizer = (FusedAdam if speedups else keras.optimizers.Adam)(learning_rate)
        trained.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    fit = dict(validation_data=(val_x, one_hot_masks(val_masks)), epochs=epochs,
               callbacks=list(callbacks), verbose=2)
    if speedups:
        batches = shuffled_batches(train_x, one_hot_masks(train_masks), batch_size, shuffle)
        trained.fit(batches, steps_per_epoch=-(-len(train_masks) // batch_size),
                    shuffle=False, **fit)                      # the stream shuffles itself
    else:
        trained.fit(train_x, one_hot_masks(train_masks), batch_size=batch_size, shuffle=shuffle, **fit)
    if work is not model:
        model.set_weights(work.get_weights())
    return model


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
