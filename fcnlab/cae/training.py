"""Train the seed's CAE (Adam + MSE, as in section 1.4) and measure its reconstructions."""

from __future__ import annotations

import math

import numpy as np

from fcnlab.cae.model import cae_autoencoder, cae_decoder, cae_encoder
from fcnlab.core.batches import predict_in_batches


def train_cae(train_x: np.ndarray, test_x: np.ndarray, epochs: int, batch_size: int,
              learning_rate: float, callbacks=(), strategy=None, seed: int = 0):
    """Fit encoder+decoder to reproduce `train_x`; `test_x` gives the per-epoch test loss.

    Returns (encoder, decoder). The caller seeds TensorFlow first (`seed_everything`); `seed`
    draws the order of the training images, a new one every epoch (`epoch_batches`).
    With a `tf.distribute` `strategy` (see fcnlab.core.distribute) the models are built and compiled
    in its scope, `batch_size` is the global batch, and every worker of a multi-worker run must
    call this; the models returned then hold the trained weights outside the strategy, so
    predicting with them involves this process alone (the other workers may have exited).
    """
    import keras
    import tensorflow as tf

    with (strategy or tf.distribute.get_strategy()).scope():
        encoder, decoder = cae_encoder(), cae_decoder()
        autoencoder = cae_autoencoder(encoder, decoder)
        autoencoder.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="mean_squared_error")
    autoencoder.fit(epoch_batches(train_x, batch_size, epochs, seed), steps_per_epoch=-(-len(train_x) // batch_size),
                    validation_data=epoch_batches(test_x, batch_size), validation_steps=-(-len(test_x) // batch_size),
                    epochs=epochs, shuffle=False, callbacks=list(callbacks), verbose=2)
    if strategy is not None and strategy is not tf.distribute.get_strategy():
        encoder, decoder = _with_weights(cae_encoder(), encoder), _with_weights(cae_decoder(), decoder)
    return encoder, decoder


def epoch_batches(images: np.ndarray, batch_size: int, epochs: int | None = None, seed: int = 0):
    """An endless tf.data stream of (image, image) batches: with `epochs`, `epochs` passes over
    `images`, each in its own order drawn from (seed, epoch); without, passes in order. Keras
    takes ceil(N / batch_size) batches per epoch (the last one short).

    Not Keras' own array input: that shuffles inside a parallel `map`, which under op determinism
    makes TensorFlow log an error-looking `E0000 ... use_unbounded_threadpool` line (a TensorFlow
    bug). The orders are NumPy's, so every worker of a multi-worker run draws the same ones.
    """
    import tensorflow as tf

    n_passes = 1 if epochs is None else epochs
    orders = np.stack([np.arange(len(images)) if epochs is None
                       else np.random.default_rng([seed, epoch]).permutation(len(images))
                       for epoch in range(n_passes)])                                 # passes x N
    pixels, orders = tf.constant(images), tf.constant(orders)
    batches = tf.data.Dataset.range(n_passes).flat_map(           # each pass: its own batches, the last short
        lambda epoch: tf.data.Dataset.from_tensor_slices(orders[epoch]).batch(batch_size))
    return batches.map(lambda indices: (tf.gather(pixels, indices),) * 2).repeat()


def _with_weights(model, trained):
    model.set_weights(trained.get_weights())
    return model


def reconstruct(encoder, decoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    latents = predict_in_batches(encoder, images, batch_size)
    return predict_in_batches(decoder, latents, batch_size)


def reconstruction_metrics(images: np.ndarray, reconstructions: np.ndarray) -> dict:
    """MSE (the training loss) and PSNR in dB for pixels in [0, 1]: 10 log10(1 / MSE)."""
    mse = float(np.mean((images.astype(np.float64) - reconstructions.astype(np.float64)) ** 2))
    psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")
    return {"mse": round(mse, 6), "psnr_db": round(psnr, 4)}
