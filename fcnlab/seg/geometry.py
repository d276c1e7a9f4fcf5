"""The image geometry FCN-8s needs: sides that are multiples of 32, and resizing to them.

FCN-8s downsamples by 32 (five 2x2 pools), so every image it sees has sides that divide by 32.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_SIZE_MULTIPLE = 32  # five 2x2 pools: H and W must divide by 2**5


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """H x W x 3 uint8 -> S x S x 3 uint8, Pillow bilinear (antialiased when shrinking)."""
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """H x W uint8 {0, 1} -> S x S uint8 {0, 1}, nearest neighbour (stays binary)."""
    if mask.shape == (size, size):
        return mask
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.NEAREST))


def padded_size(height: int, width: int, multiple: int = IMAGE_SIZE_MULTIPLE) -> tuple[int, int]:
    """The smallest (H', W') >= (height, width) that are multiples of `multiple`."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to_multiple(image: np.ndarray, multiple: int = IMAGE_SIZE_MULTIPLE) -> np.ndarray:
    """H x W (x C) -> H' x W' (x C), H' and W' the next multiples of `multiple`, by mirroring the
    image across its bottom and right edges; `padded[:H, :W]` is the image itself."""
    return pad_to_size(image, *padded_size(*image.shape[:2], multiple))


def pad_to_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    pad = [(0, height - image.shape[0]), (0, width - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect")
