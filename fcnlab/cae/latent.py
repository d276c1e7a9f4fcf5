"""The CAE's 2-D latent space: encode, measure how well it separates digits, pick points to decode.

The encoder and decoder are loaded from files by the stages and the CLI; `check_encoder_model`
and `check_decoder_model` refuse a file of the wrong kind before anything runs through it.
"""

from __future__ import annotations

import numpy as np

from fcnlab.cae.data import DIGIT_SIDE_PX
from fcnlab.core.batches import predict_in_batches
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import describe_shapes, single_io_shape

LATENT_DIM = 2


def encode(encoder, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """N x 28 x 28 x 1 images -> N x 2 latent coordinates."""
    return predict_in_batches(encoder, images, batch_size).reshape(len(images), -1)


def decode(decoder, points: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """N x 2 latent points -> N x 28 x 28 decoded images (the seed's "generated fake image")."""
    points = np.asarray(points, dtype=np.float32).reshape(-1, 1, 1, 2)
    return predict_in_batches(decoder, points, batch_size).reshape(-1, DIGIT_SIDE_PX, DIGIT_SIDE_PX)


def knn_accuracy(train_latents, train_labels, test_latents, test_labels, k: int = 5) -> float:
    """Fraction of test points whose k nearest train latents (Euclidean) vote their own digit.

    Ties in the vote go to the smallest digit; ties in distance to the lower train index.
    """
    train_latents = np.asarray(train_latents, dtype=np.float64)
    correct = 0
    for start in range(0, len(test_latents), 512):
        chunk = np.asarray(test_latents[start:start + 512], dtype=np.float64)
        distances = ((chunk[:, None, :] - train_latents[None, :, :]) ** 2).sum(-1)  # chunk x train
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
        votes = train_labels[nearest]                                               # chunk x k
        predicted = np.array([np.bincount(v).argmax() for v in votes])
        correct += int(np.sum(predicted == test_labels[start:start + 512]))
    return correct / len(test_latents)


def median_latent_per_digit(latents: np.ndarray, labels: np.ndarray) -> dict[int, np.ndarray]:
    """Each digit's coordinate-wise median latent: a point inside that digit's cloud.

    This is the `decode_points: auto` default. The seed decodes a fixed [-8, 0], which lands in
    the cloud of *its* run only; a latent space's scale and orientation change with every
    training run, so fixed coordinates can decode to noise. The medians always decode to
    recognisable digits of this run.
    """
    return {int(d): np.median(latents[labels == d], axis=0) for d in np.unique(labels)}


def latent_grid(latents: np.ndarray, n: int, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid spanning the central 90 % of the latent cloud (outliers ignored).

    Returns (z1 values, z2 values), each of length n; z2 runs top (high) to bottom (low).
    """
    low = np.quantile(latents, margin, axis=0)
    high = np.quantile(latents, 1 - margin, axis=0)
    return np.linspace(low[0], high[0], n), np.linspace(high[1], low[1], n)


def check_encoder_model(model, path) -> None:
    """Refuse anything but the CAE encoder: (N, 28, 28, 1) -> 2 latent values per image."""
    inputs, outputs = single_io_shape(model.inputs), single_io_shape(model.outputs)
    if (inputs is None or outputs is None or tuple(inputs[1:]) != (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1)
            or None in outputs[1:] or int(np.prod(outputs[1:])) != LATENT_DIM):
        raise FcnlabError(
            f"{path}: not a CAE encoder: it maps {describe_shapes(model.inputs)} to "
            f"{describe_shapes(model.outputs)}, but fcnlab needs (batch, 28, 28, 1) digits to 2 latent "
            "values; pass the encoder saved by train-cae (models/cae/encoder.keras)")


def check_decoder_model(model, path) -> None:
    """Refuse anything but the CAE decoder: (N, 1, 1, 2) -> (N, 28, 28, 1)."""
    inputs, outputs = single_io_shape(model.inputs), single_io_shape(model.outputs)
    if (inputs is None or outputs is None or tuple(inputs[1:]) != (1, 1, LATENT_DIM)
            or tuple(outputs[1:]) != (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1)):
        raise FcnlabError(
            f"{path}: not a CAE decoder: it maps {describe_shapes(model.inputs)} to "
            f"{describe_shapes(model.outputs)}, but fcnlab needs (batch, 1, 1, 2) latent points to "
            "(batch, 28, 28, 1) images; pass the decoder saved by train-cae (models/cae/decoder.keras)")
