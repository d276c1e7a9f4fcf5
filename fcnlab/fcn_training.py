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
"""

from __future__ import annotations

import numpy as np

from fcnlab.fcn import HEAD_LAYER_NAMES

SKIP_FEATURES = ("block3_pool", "block4_pool", "block5_pool")


def one_hot_masks(masks: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """N x H x W masks of class ids -> N x H x W x n float32 one-hot targets (the seed's labels)."""
    return np.eye(n_classes, dtype=np.float32)[masks]


def train_fcn(model, train_images, train_masks, val_images, val_masks, epochs: int,
              batch_size: int, learning_rate: float, callbacks=(), cache_encoder_features: bool = True,
              strategy=None):
    """Fit `model` in place on uint8 images (the model preprocesses them) and 0/1 masks.

    The validation split gives the per-epoch `val_loss`/`val_accuracy` curves. When every
    encoder layer is frozen and `cache_encoder_features` is true, only the head is run per
    epoch (see the module docstring); the result is the same training, faster.
    The caller seeds TensorFlow first (`seed_everything`). With a `tf.distribute` `strategy`
    (fcnlab.distribute), `model` must have been built in its scope and `batch_size` is global.
    """
    import keras
    import tensorflow as tf

    with (strategy or tf.distribute.get_strategy()).scope():
        frozen = encoder_is_frozen(model)
        trained = head_model(model) if (frozen and cache_encoder_features) else model
        if trained is model:
            train_x, val_x = train_images.astype(np.float32), val_images.astype(np.float32)
        else:
            features = encoder_features_model(model)
            train_x = _predict_in_batches(features, train_images, batch_size)
            val_x = _predict_in_batches(features, val_images, batch_size)
        trained.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                        metrics=["accuracy"])
    trained.fit(train_x, one_hot_masks(train_masks), validation_data=(val_x, one_hot_masks(val_masks)),
                epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=list(callbacks), verbose=2)
    return model


def encoder_is_frozen(model) -> bool:
    head = set(HEAD_LAYER_NAMES)
    return not any(layer.trainable_weights for layer in model.layers if layer.name not in head)


def encoder_features_model(model):
    """image -> [pool3, pool4, pool5]: the part of `model` that a frozen encoder makes constant.

    The encoder is a plain chain (preprocessing, then VGG16's convs and pools), so its layers
    are called again in order on a new input; they are the same layer objects (same weights).
    """
    import keras

    image = keras.Input(shape=model.inputs[0].shape[1:], name="image")
    x, features = image, {}
    for layer in model.layers[1:]:
        x = features[layer.name] = layer(x)
        if layer.name == SKIP_FEATURES[-1]:
            break
    return keras.Model(image, [features[name] for name in SKIP_FEATURES], name="fcn_encoder_features")


def head_model(model):
    """[pool3, pool4, pool5] -> probabilities, built from `model`'s own head layers (shared weights)."""
    import keras

    pool3, pool4, pool5 = (keras.Input(shape=model.get_layer(name).output.shape[1:], name=name)
                           for name in SKIP_FEATURES)
    layer = model.get_layer
    x = layer("fc7")(layer("conv6")(pool5))
    x = layer("up2_pool5")(layer("score")(x))
    x = layer("up2_fuse")(layer("fuse_pool4")([x, pool4]))
    x = layer("up8_softmax")(layer("fuse_pool3")([x, pool3]))
    return keras.Model([pool3, pool4, pool5], x, name="fcn_head")


def _predict_in_batches(model, images: np.ndarray, batch_size: int) -> list[np.ndarray]:
    outputs = model.predict(images.astype(np.float32), batch_size=max(batch_size, 8), verbose=0)
    return [np.asarray(o, dtype=np.float32) for o in outputs]


def predict_foreground(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """N x H x W x 3 images -> N x H x W float32 foreground probabilities (softmax channel 1)."""
    probabilities = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return probabilities[..., 1].astype(np.float32)
