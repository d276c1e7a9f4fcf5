"""Train FCN-8s (Adam + categorical cross-entropy + accuracy, as the seed) and predict with it.

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

Both paths also use `fcnlab.exact_speedups`: conv6 computed without its zero padding and
Adam's update fused into one pass. The fitted model is an in-memory twin (`fast_twin`, or the
head) made of `model`'s own layers, so `model` itself stays the seed's plain network.
Training feeds one endless shuffled tf.data stream (`shuffled_batches`), and prediction goes
batch by batch through `predict_on_batch`: on 2 CPU cores Keras' `predict` added about 45 % to
the time of a 224-px batch of 8 (0.32 s against 0.22 s an image).

precision "bfloat16" (params `fcn.precision`, `evaluate.precision`) is Keras' mixed precision:
float32 weights, bfloat16 products. Unlike the above it changes the numbers (by up to ~1e-2 in a
probability); it is about 2x faster where the hardware multiplies bfloat16 natively.
"""

from __future__ import annotations

import weakref

import numpy as np

from fcnlab.errors import FcnlabError
from fcnlab.exact_speedups import FusedAdam, PaddingFreeConv2D
from fcnlab.fcn import HEAD_LAYER_NAMES

SKIP_FEATURES = ("block3_pool", "block4_pool", "block5_pool")


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
    (fcnlab.distribute), `model` must have been built in its scope and `batch_size` is global.
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

    Given NumPy arrays, Keras' `fit` makes a new iterator every epoch, and on 2 CPU cores its
    train function was then often traced again: 1.6-2.0 s lost at the start of most epochs
    (the whole epoch of the seed's head takes 3.1 s). One endless iterator, with
    `steps_per_epoch` = ceil(N / batch) (one pass, the last batch short), is traced once.
    The order follows TensorFlow's global seed (`seed_everything`).
    """
    import tensorflow as tf

    inputs = tuple(inputs) if isinstance(inputs, list) else inputs
    dataset = tf.data.Dataset.from_tensor_slices((inputs, targets))
    if shuffle:
        dataset = dataset.shuffle(len(targets), reshuffle_each_iteration=True)
    return dataset.batch(batch_size).repeat()


def encoder_is_frozen(model) -> bool:
    head = set(HEAD_LAYER_NAMES)
    return not any(layer.trainable_weights for layer in model.layers if layer.name not in head)


def encoder_features_model(model):
    """image -> [pool3, pool4, pool5]: the part of `model` that a frozen encoder makes constant."""
    import keras

    image = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    return keras.Model(image, _encoder(model, image), name="fcn_encoder_features")


def head_model(model, padding_free: bool = True):
    """[pool3, pool4, pool5] -> probabilities, built from `model`'s own head layers (shared weights)."""
    import keras

    pools = [keras.Input(shape=model.get_layer(name).output.shape[1:], name=name) for name in SKIP_FEATURES]
    return keras.Model(pools, _head(model, *pools, padding_free=padding_free), name="fcn_head")


def is_fcn8s(model) -> bool:
    """Whether `model` has fcnlab.fcn's layer names (other segmentation models are run as they are)."""
    names = {layer.name for layer in model.layers}
    return set(HEAD_LAYER_NAMES) <= names and set(SKIP_FEATURES) <= names


def fast_twin(model):
    """`model` with conv6 computed padding-free: the same layers and weights, the same outputs."""
    import keras

    image = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    return keras.Model(image, _head(model, *_encoder(model, image), padding_free=True), name="fcn8s_vgg16_fast")


def _encoder(model, image):
    """`model`'s encoder layers called again, in order, on `image` (it is a plain chain)."""
    x, features = image, {}
    for layer in model.layers[1:]:
        x = features[layer.name] = layer(x)
        if layer.name == SKIP_FEATURES[-1]:
            break
    return [features[name] for name in SKIP_FEATURES]


def _head(model, pool3, pool4, pool5, padding_free: bool):
    """`model`'s head layers called again on the three encoder maps (see fcnlab.fcn's diagram)."""
    layer = model.get_layer
    conv6 = PaddingFreeConv2D(layer("conv6")) if padding_free else layer("conv6")
    x = layer("fc7")(conv6(pool5))
    x = layer("up2_pool5")(layer("score")(x))
    x = layer("up2_fuse")(layer("fuse_pool4")([x, pool4]))
    return layer("up8_softmax")(layer("fuse_pool3")([x, pool3]))


def predict_in_batches(model, inputs: np.ndarray, batch_size: int):
    """`model.predict(inputs)` as float32 NumPy, batch by batch through `predict_on_batch`.

    A short last batch is padded with copies of its last item (and the copies dropped), so
    every batch has one shape and the graph is traced once.
    """
    if len(inputs) == 0:
        raise ValueError("predict_in_batches: no inputs")
    batches = []
    for start in range(0, len(inputs), batch_size):
        batch = np.asarray(inputs[start:start + batch_size], dtype=np.float32)
        kept = len(batch)
        if kept < batch_size and start > 0:
            batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - kept, axis=0)])
        outputs = model.predict_on_batch(batch)
        single = not isinstance(outputs, (list, tuple))
        batches.append([np.asarray(o, dtype=np.float32)[:kept] for o in ([outputs] if single else outputs)])
    merged = [np.concatenate(parts) for parts in zip(*batches)]
    return merged[0] if single else merged


PRECISIONS = ("float32", "bfloat16")


def predict_foreground(model, images: np.ndarray, batch_size: int = 8, precision: str = "float32") -> np.ndarray:
    """N x H x W x 3 images -> N x H x W float32 foreground probabilities (softmax channel 1).

    Runs `fast_twin(model)` (or, for a model that is not fcnlab's FCN-8s, `model` itself) batch
    by batch; with precision "float32" the probabilities equal `model.predict`'s to float32
    rounding. "bfloat16" computes with Keras' mixed_bfloat16 policy (weights kept in float32,
    products in bfloat16): about 2x faster on CPUs with AVX512-BF16 or AMX and on recent GPUs,
    slower on CPUs without them; probabilities then differ by up to ~1e-2 (0.012 measured; see
    README, Performance).
    """
    return predict_in_batches(_prediction_twin(model, precision), images, batch_size)[..., 1]


# model -> {precision: (its bfloat16 copy or None, its fast twin or None)}; kept while the model
# lives (the values never hold the model itself), so calls on the same model reuse one traced
# graph (`segment_files` predicts chunk by chunk).
_PREDICTION_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def check_precision(precision: str, where: str = "precision") -> None:
    if precision not in PRECISIONS:
        raise FcnlabError(f"{where}: {precision!r} is not a precision; use one of {', '.join(PRECISIONS)}")


def _prediction_twin(model, precision: str):
    check_precision(precision)
    twins = _PREDICTION_TWINS.setdefault(model, {})
    if precision not in twins:
        copy = None if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        source = model if copy is None else copy
        twins[precision] = (copy, fast_twin(source) if is_fcn8s(source) else None)
    copy, twin = twins[precision]
    if copy is not None:                               # bring the copy's weights up to date
        copy.set_weights(model.get_weights())
    source = model if copy is None else copy
    return source if twin is None else twin            # a model that is not FCN-8s runs as it is


def with_dtype_policy(model, policy: str):
    """A copy of `model` (same architecture, copied weights) whose layers compute under `policy`."""
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] != "InputLayer":
            layer["config"]["dtype"] = keras.dtype_policies.serialize(keras.DTypePolicy(policy))
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy
