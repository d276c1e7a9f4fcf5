"""Train FCN-8s (Adam + categorical cross-entropy + accuracy, as the seed) and predict with it."""

from __future__ import annotations

import numpy as np


def one_hot_masks(masks: np.ndarray, n_classes: int = 2) -> np.ndarray:
    """N x H x W masks of class ids -> N x H x W x n float32 one-hot targets (the seed's labels)."""
    return np.eye(n_classes, dtype=np.float32)[masks]


def train_fcn(model, train_images, train_masks, val_images, val_masks, epochs: int,
              batch_size: int, learning_rate: float, callbacks=()):
    """Fit `model` in place on uint8 images (the model preprocesses them) and 0/1 masks.

    The validation split gives the per-epoch `val_loss`/`val_accuracy` curves.
    The caller seeds TensorFlow first (`seed_everything`).
    """
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train_images.astype(np.float32), one_hot_masks(train_masks),
              validation_data=(val_images.astype(np.float32), one_hot_masks(val_masks)),
              epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=list(callbacks), verbose=2)
    return model


def predict_foreground(model, images: np.ndarray, batch_size: int = 8) -> np.ndarray:
    """N x H x W x 3 images -> N x H x W float32 foreground probabilities (softmax channel 1)."""
    probabilities = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return probabilities[..., 1].astype(np.float32)
