"""The convolutional autoencoder (CAE) of the seed's section 1.4, layer by layer.

    image 28x28x1 ──encoder──► latent 1x1x2 ──decoder──► image 28x28x1

The encoder and decoder are separate `keras.Model`s (the seed calls both on their own: the
encoder to draw the latent space, the decoder to turn a hand-picked latent point into a
"generated fake image"); `cae_autoencoder` chains them for training.

The seed's maths is kept exactly; the only change is that its final layer's linear output is
named, so reconstructions are compared to inputs in [0, 1] by MSE just as the seed does.
"""

from __future__ import annotations

import keras
from keras import layers

from fcnlab.cae.data import DIGIT_SIDE_PX
from fcnlab.cae.latent import LATENT_DIM

IMAGE_SHAPE = (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1)


def cae_encoder() -> keras.Model:
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")                                   # 28x28x1
    x = layers.Conv2D(32, (3, 3), strides=(2, 2), padding="same", activation="relu",
                      name="enc_conv1")(inputs)                                               # 14x14x32
    x = layers.Conv2D(64, (3, 3), strides=(2, 2), padding="same", activation="relu",
                      name="enc_conv2")(x)                                                    # 7x7x64
    latent = layers.Conv2D(LATENT_DIM, (7, 7), padding="valid", name="latent")(x)            # 1x1x2
    return keras.Model(inputs, latent, name="cae_encoder")


def cae_decoder() -> keras.Model:
    latent = keras.Input(shape=(1, 1, LATENT_DIM), name="latent")                            # 1x1x2
    x = layers.Conv2DTranspose(64, (7, 7), strides=(1, 1), padding="valid", activation="relu",
                               name="dec_deconv1")(latent)                                    # 7x7x64
    x = layers.Conv2DTranspose(32, (3, 3), strides=(2, 2), padding="same", activation="relu",
                               name="dec_deconv2")(x)                                         # 14x14x32
    image = layers.Conv2DTranspose(1, (7, 7), strides=(2, 2), padding="same",
                                   name="reconstruction")(x)                                  # 28x28x1
    return keras.Model(latent, image, name="cae_decoder")


def cae_autoencoder(encoder: keras.Model, decoder: keras.Model) -> keras.Model:
    """The trainable whole: image -> encoder -> decoder -> image (weights shared with both)."""
    inputs = keras.Input(shape=IMAGE_SHAPE, name="image")
    return keras.Model(inputs, decoder(encoder(inputs)), name="cae")
