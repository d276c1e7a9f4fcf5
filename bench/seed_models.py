"""The seed notebook's models and training calls, as written there, for side-by-side benchmarks.

Only what the seed does: no preprocessing, a ReLU on the score layer, `model.fit` on NumPy
arrays, and `model.predict` one test image at a time. Not used by the pipeline.
"""

from __future__ import annotations

import keras
import numpy as np


def seed_fcn(image_size: int = 224, head_width: int = 4096, n_classes: int = 2,
             freeze_encoder: bool = True) -> keras.Model:
    """Section 2.4.1-2.4.2: VGG16 (random weights offline) + the seed's FCN head.

    At 224 px this is the seed's exact graph (VGG16 with its top, layers[-5]/[14]/[10]); other
    sizes need VGG16 without its top, which has the same layers up to block5_pool.
    `freeze_encoder=False` changes only `base_model.trainable`, to time the seed's code path on
    the project's default (trainable) configuration.
    """
    if image_size == 224:
        base_model = keras.applications.VGG16(weights=None)
        map5 = base_model.layers[-5].output
    else:
        base_model = keras.applications.VGG16(weights=None, include_top=False,
                                              input_shape=(image_size, image_size, 3))
        map5 = base_model.layers[-1].output
    base_model.trainable = not freeze_encoder
    conv6 = keras.layers.Conv2D(head_width, (7, 7), padding="same", activation="relu")(map5)
    fcn4 = keras.layers.Conv2D(head_width, (1, 1), padding="same", activation="relu")(conv6)
    fcn3 = keras.layers.Conv2D(n_classes, (1, 1), padding="same", activation="relu")(fcn4)
    fcn2 = keras.layers.Conv2DTranspose(512, (4, 4), strides=(2, 2), padding="same")(fcn3)
    fcn1 = keras.layers.Conv2DTranspose(256, (4, 4), strides=(2, 2), padding="same")(
        fcn2 + base_model.layers[14].output)
    output = keras.layers.Conv2DTranspose(n_classes, (16, 16), strides=(8, 8), padding="same",
                                          activation="softmax")(fcn1 + base_model.layers[10].output)
    model = keras.Model(inputs=base_model.inputs, outputs=output)
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


def seed_cae() -> keras.Model:
    """Section 1.4: the Sequential encoder and decoder chained into one model, Adam + MSE."""
    encoder = keras.models.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2D(64, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2D(2, (7, 7), padding="valid"),
    ])
    decoder = keras.models.Sequential([
        keras.Input((1, 1, 2)),
        keras.layers.Conv2DTranspose(64, (7, 7), strides=(1, 1), activation="relu", padding="valid"),
        keras.layers.Conv2DTranspose(32, (3, 3), strides=(2, 2), activation="relu", padding="same"),
        keras.layers.Conv2DTranspose(1, (7, 7), strides=(2, 2), padding="same"),
    ])
    model = keras.Model(inputs=encoder.inputs, outputs=decoder(encoder.outputs[0]))  # Keras 3: .input -> .inputs
    model.compile(optimizer="adam", loss="mean_squared_error")
    return model


def seed_predict_one_by_one(model: keras.Model, images: np.ndarray) -> np.ndarray:
    """The seed's inference: `model.predict(test_imgs[[i]])` for each test image."""
    return np.concatenate([model.predict(images[[i]], verbose=0) for i in range(len(images))])
