"""Digit image files in, decoded digit images out: the `fcnlab encode` / `decode` commands' work.

Digit images for the CAE encoder are read the MNIST way: grayscale, 28x28 (Pillow bilinear,
antialiased, if the file has another size; the aspect ratio is not kept), pixel / 255 in [0, 1],
a white (bright) digit on a black background. Nothing is inverted: a black-on-white digit
encodes to a point far from the training digits (`looks_inverted` tells the caller).

Decoded latent points become 8-bit grayscale: the decoder's linear output is clipped to [0, 1]
(the range it was trained to reproduce) and mapped to round(255 * value).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from fcnlab.cae.data import DIGIT_SIDE_PX
from fcnlab.cae.latent import decode
from fcnlab.core.io import read_rgb_image


def digit_image_for_encoder(path) -> np.ndarray:
    """28 x 28 x 1 float32 in [0, 1] from an image file, read as MNIST digits are stored:
    grayscale, a bright digit on a dark background, resized to 28 x 28 if it is another size."""
    gray = Image.fromarray(read_rgb_image(path)).convert("L")                   # H x W
    if gray.size != (DIGIT_SIDE_PX, DIGIT_SIDE_PX):
        gray = gray.resize((DIGIT_SIDE_PX, DIGIT_SIDE_PX), Image.BILINEAR)
    return (np.asarray(gray, dtype=np.float32) / 255.0)[..., None]               # 28 x 28 x 1


def looks_inverted(digit: np.ndarray) -> bool:
    """True if the image is mostly bright, i.e. probably a dark digit on a light background."""
    return float(np.mean(digit)) > 0.5


def decoded_digit_image(decoder, z1: float, z2: float, scale: int = 1) -> np.ndarray:
    """The seed's "generated fake image" of latent point (z1, z2): (28*scale) x (28*scale) uint8,
    the decoder's output clipped to [0, 1] times 255, enlarged by nearest neighbour."""
    decoded = decode(decoder, np.array([[z1, z2]]))[0]                           # 28 x 28
    pixels = np.rint(np.clip(decoded, 0.0, 1.0) * 255).astype(np.uint8)
    return np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
