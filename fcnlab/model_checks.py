"""Check that a loaded Keras model is the kind a step needs, before anything runs through it.

A model file of the wrong kind (say the CAE encoder passed where the FCN is expected) would
otherwise fail deep inside TensorFlow with a shape error; these say which file and what to pass.
"""

from __future__ import annotations

import numpy as np

from fcnlab.errors import FcnlabError

DIGIT_SIDE_PX = 28                       # the CAE's input: 28 x 28 x 1, as MNIST



def check_segmentation_model(model, path) -> None:
    """Refuse anything but a one-input, one-output model (N, H, W, 3) -> (N, H, W, 2)."""
    inputs, outputs = _single_shape(model.inputs), _single_shape(model.outputs)
    if (inputs is None or outputs is None or len(inputs) != 4 or len(outputs) != 4
            or inputs[-1] != 3 or outputs[-1] != 2):
        raise FcnlabError(
            f"{path}: not a 2-class segmentation model: it maps {_describe(model.inputs)} to "
            f"{_describe(model.outputs)}, but fcnlab needs (batch, H, W, 3) RGB images to "
            "(batch, H, W, 2) class probabilities; pass the FCN saved by train-fcn "
            "(models/fcn/fcn8s_vgg16.keras)")


def check_encoder_model(model, path) -> None:
    """Refuse anything but the CAE encoder: (N, 28, 28, 1) -> 2 latent values per image."""
    inputs, outputs = _single_shape(model.inputs), _single_shape(model.outputs)
    if (inputs is None or outputs is None or tuple(inputs[1:]) != (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1)
            or None in outputs[1:] or int(np.prod(outputs[1:])) != 2):
        raise FcnlabError(
            f"{path}: not a CAE encoder: it maps {_describe(model.inputs)} to "
            f"{_describe(model.outputs)}, but fcnlab needs (batch, 28, 28, 1) digits to 2 latent "
            "values; pass the encoder saved by train-cae (models/cae/encoder.keras)")


def check_decoder_model(model, path) -> None:
    """Refuse anything but the CAE decoder: (N, 1, 1, 2) -> (N, 28, 28, 1)."""
    inputs, outputs = _single_shape(model.inputs), _single_shape(model.outputs)
    if (inputs is None or outputs is None or tuple(inputs[1:]) != (1, 1, 2)
            or tuple(outputs[1:]) != (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1)):
        raise FcnlabError(
            f"{path}: not a CAE decoder: it maps {_describe(model.inputs)} to "
            f"{_describe(model.outputs)}, but fcnlab needs (batch, 1, 1, 2) latent points to "
            "(batch, 28, 28, 1) images; pass the decoder saved by train-cae (models/cae/decoder.keras)")


def _single_shape(tensors) -> tuple | None:
    return tuple(tensors[0].shape) if len(tensors) == 1 else None


def _describe(tensors) -> str:
    shapes = [str(tuple(t.shape)).replace("None", "batch", 1).replace("None", "any") for t in tensors]
    return shapes[0] if len(shapes) == 1 else f"{len(shapes)} tensors {', '.join(shapes)}"


CHECKS = {"segmentation": check_segmentation_model, "encoder": check_encoder_model,
          "decoder": check_decoder_model}
