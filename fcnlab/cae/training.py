"""Train the seed's CAE (Adam + MSE, as in section 1.4) and measure its reconstructions."""

from __future__ import annotations

import math

import numpy as np

from fcnlab.cae.model import cae_autoencoder, cae_decoder, cae_encoder


def train_cae(train_x: np.ndarray, test_x: np.ndarray, epochs: int, batch_size: int,
              learning_rate: float, callbacks=(), strategy=None):
    """Fit encoder+decoder to reproduce `train_x`; `test_x` gives the per-epoch test loss.

    Returns (encoder, decoder). The caller seeds TensorFlow first (`seed_everything`).
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
    autoencoder.fit(train_x, train_x, validation_data=(test_x, test_x), epochs=epochs,
                    batch_size=batch_size, shuffle=True, callbacks=list(callbacks), verbose=2)
    if strategy is not None and strategy is not tf.distribute.get_strategy():
        encoder, decoder = _with_weights(cae_encoder(), encoder), _with_weights(cae_decoder(), decoder)
    return encoder, decoder


def _with_weights(model, trained):
    model.set_weights(trained.get_weights())
    return model


def reconstruct(encoder, decoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    latents = encoder.predict(images, batch_size=batch_size, verbose=0)
    return decoder.predict(latents, batch_size=batch_size, verbose=0)


def reconstruction_metrics(images: np.ndarray, reconstructions: np.ndarray) -> dict:
    """MSE (the training loss) and PSNR in dB for pixels in [0, 1]: 10 log10(1 / MSE)."""
    mse = float(np.mean((images.astype(np.float64) - reconstructions.astype(np.float64)) ** 2))
    psnr = 10.0 * math.log10(1.0 / mse) if mse > 0 else float("inf")
    return {"mse": round(mse, 6), "psnr_db": round(psnr, 4)}
