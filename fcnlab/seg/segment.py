"""Segment image files of any size with a trained FCN-8s (the `fcnlab segment` command's work).

    image HxWx3 uint8
      │ pad bottom and right by reflection      H'xW'x3   (H', W' = the next multiples of 32)
      │ model (raw RGB 0..255 in)               H'xW'x2   class probabilities
      ▼ channel 1, crop [:H, :W]                HxW       foreground probability

Padding mirrors the image across its bottom and right edges (NumPy's "reflect" mode: the last
row/column is not repeated), so the network sees image-like content rather than a black band,
and no pixel of the original is resized or moved; the crop takes exactly the original pixels
back. A pixel is foreground when its probability is strictly above the threshold (as in
evaluate-iou).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import read_rgb_image
from fcnlab.seg.figures import PREDICTION_FILL
from fcnlab.seg.geometry import pad_to_size, padded_size
from fcnlab.seg.metrics import predict_masks
from fcnlab.seg.predict import predict_foreground

OVERLAY_RGBA = PREDICTION_FILL.colors[1]  # the report figures' translucent blue, (r, g, b, alpha) in 0..1


def model_input_size(model, height: int, width: int) -> tuple[int, int]:
    """The size an H x W image is padded to for `model`: the next multiples of 32, or the model's
    own input size if it was built for one size only (an image larger than that is refused)."""
    padded = padded_size(height, width)
    fixed = tuple(model.inputs[0].shape[1:3])
    if fixed == (None, None):
        return padded
    if (fixed[0] is not None and height > fixed[0]) or (fixed[1] is not None and width > fixed[1]):
        raise FcnlabError(f"image is {height} x {width} px but the model was built for "
                          f"{fixed[0]} x {fixed[1]} px inputs only; crop or downscale the image, "
                          "or use a model built with image_size None (as train-fcn saves it)")
    return fixed[0] or padded[0], fixed[1] or padded[1]


def segment_images(model, images: list[np.ndarray], batch_size: int = 8,
                   precision: str = "float32") -> list[np.ndarray]:
    """H x W x 3 RGB images (0..255) of any sizes -> H x W float32 foreground probabilities each.

    Images padded to the same size share a batch. precision: "float32", or "bfloat16" (faster
    where the hardware has it; see `fcnlab.seg.predict.predict_foreground`).
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(model_input_size(model, *image.shape[:2]), []).append(index)
    fg_probs: list[np.ndarray | None] = [None] * len(images)
    for size, indices in by_size.items():
        padded = np.stack([pad_to_size(images[i], *size) for i in indices])    # N x H' x W' x 3
        probabilities = predict_foreground(model, padded, batch_size, precision)  # N x H' x W'
        for i, probability in zip(indices, probabilities):
            height, width = images[i].shape[:2]
            fg_probs[i] = probability[:height, :width]                           # H x W
    return fg_probs


@dataclass
class SegmentedFile:
    path: Path
    image: np.ndarray | None = None      # H x W x 3 uint8, as read
    fg_probs: np.ndarray | None = None   # H x W float32 foreground probabilities
    error: FcnlabError | None = None     # why the file could not be segmented (then no image)


def segment_files(model, paths, batch_size: int = 4, precision: str = "float32") -> Iterator[SegmentedFile]:
    """Read and segment `batch_size` files at a time; yield one result per path, in order.

    A file that cannot be read (or is larger than a fixed-size model's input) yields its
    error instead, and the others go on; at most `batch_size` images are held in memory.
    """
    paths = [Path(path) for path in paths]
    for start in range(0, len(paths), batch_size):
        results = [SegmentedFile(path) for path in paths[start:start + batch_size]]
        for result in results:
            try:
                result.image = read_rgb_image(result.path)
                model_input_size(model, *result.image.shape[:2])
            except FcnlabError as err:
                result.image, result.error = None, err
        readable = [result for result in results if result.error is None]
        for result, fg_probs in zip(readable, segment_images(model, [r.image for r in readable],
                                                             batch_size, precision)):
            result.fg_probs = fg_probs
        yield from results


def foreground_mask(fg_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """H x W probabilities -> H x W uint8 mask, 1 where strictly above `threshold`."""
    return predict_masks(fg_probs, threshold)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """H x W {0, 1} mask -> H x W uint8 {0, 255}, the `_mask.png` written for each image."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def overlay_image(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 image with the mask's foreground tinted the report figures' blue."""
    *tint_rgb, alpha = OVERLAY_RGBA
    weight = alpha * (np.asarray(mask) > 0)[..., None]                          # H x W x 1
    blended = image * (1 - weight) + 255 * np.array(tint_rgb) * weight
    return np.rint(blended).astype(np.uint8)
