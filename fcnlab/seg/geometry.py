"""Image geometry, one policy from training to use: the scale images are trained at, and padding.

A resize policy says at what scale the network sees an image (param `seg.resize`):

    square       every image resized to S x S, aspect ratio not kept (the seed's way)
    keep_aspect  resized so its longer side is S, aspect ratio kept
    none         kept at its own resolution (S unused)

prepare-seg brings every image to that scale; train-fcn records the policy beside the model
(`<model>.geometry.json`), and evaluate-iou and `fcnlab segment` use it again: resize to the
training scale, predict, resize the probabilities back to the image's own size.

FCN-8s downsamples by 32 (five 2x2 pools), so the image it sees is padded at its bottom and
right, by reflection, to the next multiples of 32, and the prediction cropped back.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

IMAGE_SIZE_MULTIPLE = 32  # five 2x2 pools: H and W must divide by 2**5
RESIZE_POLICIES = ("square", "keep_aspect", "none")


def training_scale_size(height: int, width: int, policy: str, size: int) -> tuple[int, int]:
    """(H', W'): the size an H x W image has at the training scale of `policy` (see above)."""
    if policy == "square":
        return size, size
    if policy == "keep_aspect":
        scale = size / max(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    if policy == "none":
        return height, width
    raise ValueError(f"resize policy {policy!r}: use one of {', '.join(RESIZE_POLICIES)}")


def to_training_scale(image: np.ndarray, policy: str, size: int) -> np.ndarray:
    """H x W x 3 uint8 image -> H' x W' x 3 at the training scale (Pillow bilinear)."""
    return resize_image_to(image, *training_scale_size(*image.shape[:2], policy, size))


def mask_to_training_scale(mask: np.ndarray, policy: str, size: int) -> np.ndarray:
    """H x W {0, 1} mask -> H' x W' at the training scale (nearest neighbour: stays binary)."""
    return resize_mask_to(mask, *training_scale_size(*mask.shape, policy, size))


def probabilities_to_size(probs: np.ndarray, height: int, width: int) -> np.ndarray:
    """H' x W' float32 probabilities -> H x W (bilinear on the float values themselves)."""
    if probs.shape == (height, width):
        return probs
    resized = Image.fromarray(np.asarray(probs, dtype=np.float32), mode="F").resize((width, height), Image.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """H x W x 3 uint8 -> S x S x 3 uint8, Pillow bilinear (antialiased when shrinking)."""
    return resize_image_to(image, size, size)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """H x W uint8 {0, 1} -> S x S uint8 {0, 1}, nearest neighbour (stays binary)."""
    return resize_mask_to(mask, size, size)


def resize_image_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))


def resize_mask_to(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    return np.asarray(Image.fromarray(mask).resize((width, height), Image.NEAREST))


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
