"""The CAE equals the seed's section 1.4 autoencoder, layer by layer."""

import keras
import numpy as np
import pytest

from fcnlab.cae.model import cae_autoencoder, cae_decoder, cae_encoder


def seed_encoder():
    """The seed's encoder as written there (Sequential, input_shape on the first layer)."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2D(64, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2D(2, (7, 7), padding="valid"),
    ])


def seed_decoder():
    return keras.Sequential([
        keras.Input((1, 1, 2)),
        keras.layers.Conv2DTranspose(64, (7, 7), strides=(1, 1), activation="relu", padding="valid"),
        keras.layers.Conv2DTranspose(32, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2DTranspose(1, (7, 7), strides=(2, 2), padding="same"),
    ])


def layer_summary(model):
    """(class, output shape, parameter count, activation, strides, padding) of each layer."""
    return [(type(layer).__name__, tuple(layer.output.shape), layer.count_params(),
             layer.get_config().get("activation"), layer.get_config().get("strides"),
             layer.get_config().get("padding"), layer.get_config().get("kernel_size"))
            for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


@pytest.mark.parametrize("ours, seeds", [(cae_encoder, seed_encoder), (cae_decoder, seed_decoder)])
def test_layers_match_the_seed_one_by_one(ours, seeds):
    assert layer_summary(ours()) == layer_summary(seeds())


def test_layer_output_shapes():
    assert [tuple(l.output.shape) for l in cae_encoder().layers[1:]] == [
        (None, 14, 14, 32), (None, 7, 7, 64), (None, 1, 1, 2)]
    assert [tuple(l.output.shape) for l in cae_decoder().layers[1:]] == [
        (None, 7, 7, 64), (None, 14, 14, 32), (None, 28, 28, 1)]


def test_parameter_counts_equal_the_seed():
    assert cae_encoder().count_params() == seed_encoder().count_params() == 320 + 18_496 + 6_274
    assert cae_decoder().count_params() == seed_decoder().count_params() == 6_336 + 18_464 + 1_569


def test_autoencoder_shares_weights_with_encoder_and_decoder():
    encoder, decoder = cae_encoder(), cae_decoder()
    autoencoder = cae_autoencoder(encoder, decoder)
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(autoencoder.predict(x, verbose=0),
                               decoder.predict(encoder.predict(x, verbose=0), verbose=0), rtol=1e-5, atol=1e-6)
    assert autoencoder.count_params() == encoder.count_params() + decoder.count_params()
