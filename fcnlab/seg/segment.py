"""Segment image files of any size with a trained FCN-8s (the `fcnlab segment` command's work).

An image is segmented at the scale the model was trained at, from the geometry record train-fcn
writes beside the model (`<model>.geometry.json`, see `fcnlab.seg.geometry`):

    image HxWx3 uint8
      │ resize to the training scale            H'xW'x3   (square: S x S; keep_aspect: longer side S)
      │ pad, predict, crop (fcnlab.seg.predict)  H'xW'     foreground probability
      ▼ resize the probabilities back            HxW       (bilinear), then > threshold

which is what evaluate-iou measured on the test split. `native=True` (or a model without a
geometry record) predicts at the image's own size instead. A pixel is foreground when its
probability is strictly above the threshold (as in evaluate-iou).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import read_rgb_image
from fcnlab.seg.figures import PREDICTION_FILL
from fcnlab.seg.geometry import probabilities_to_size, to_training_scale
from fcnlab.seg.metrics import predict_masks
from fcnlab.seg.predict import predict_images

OVERLAY_RGBA = PREDICTION_FILL.colors[1]  # the report figures' translucent blue, (r, g, b, alpha) in 0..1


def segment_image(model, image: np.ndarray, geometry: dict | None, precision: str = "float32") -> np.ndarray:
    """H x W x 3 uint8 image -> H x W float32 foreground probabilities, at the training scale of
    `geometry` ({"resize", "image_size"}; None: the image's own size), resized back."""
    height, width = image.shape[:2]
    if geometry is None:
        return predict_images(model, [image], precision=precision)[0]
    scaled = to_training_scale(image, geometry["resize"], geometry["image_size"])   # H' x W' x 3
    probs = predict_images(model, [scaled], precision=precision)[0]                # H' x W'
    return probabilities_to_size(probs, height, width)                              # H x W


@dataclass
class SegmentedFile:
    path: Path
    image: np.ndarray | None = None      # H x W x 3 uint8, as read
    fg_probs: np.ndarray | None = None   # H x W float32 foreground probabilities
    error: FcnlabError | None = None     # why the file could not be segmented (then no image)


def segment_files(model, paths, geometry: dict | None = None, precision: str = "float32") -> Iterator[SegmentedFile]:
    """Read and segment one file at a time (`segment_image`); yield one result per path, in order.

    A file that cannot be read (or is larger than a fixed-size model's input) yields its
    error instead, and the others go on; one image is held in memory at a time.
    """
    for path in paths:
        result = SegmentedFile(Path(path))
        try:
            result.image = read_rgb_image(result.path)
            result.fg_probs = segment_image(model, result.image, geometry, precision)
        except FcnlabError as err:
            result.image, result.fg_probs, result.error = None, None, err
        yield result


def foreground_mask(fg_probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """H x W probabilities -> H x W uint8 mask, 1 where strictly above `threshold`."""
    return predict_masks(fg_probs, threshold)


def mask_image(mask: np.ndarray) -> np.ndarray:
    """H x W {0, 1} mask -> H x W uint8 {0, 255}, the `_mask.png` written for each image."""
    return (np.asarray(mask) > 0).astype(np.uint8) * 255


def overlay_image(image: np.ndarray, mask: np.ndarray, chunk_pixels: int = 1 << 18) -> np.ndarray:
    """H x W x 3 uint8 image with the mask's foreground tinted the report figures' blue.

    Blended a band of rows at a time, only the foreground pixels in float: beyond the uint8
    copy it returns, memory stays at about 27 bytes a pixel of one band of `chunk_pixels`."""
    *tint_rgb, alpha = OVERLAY_RGBA
    tint = 255 * np.array(tint_rgb) * alpha                                      # 3
    overlay = np.array(image, dtype=np.uint8)                                   # H x W x 3, a copy
    foreground = np.asarray(mask) > 0                                           # H x W
    rows = max(1, chunk_pixels // max(1, overlay.shape[1]))
    for top in range(0, overlay.shape[0], rows):
        band, band_fg = overlay[top:top + rows], foreground[top:top + rows]     # views
        blended = band[band_fg] * (1 - alpha)                                   # N x 3 float64
        blended += tint
        band[band_fg] = np.rint(blended, out=blended)
    return overlay
