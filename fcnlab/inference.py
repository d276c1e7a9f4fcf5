"""Using trained models on new files: segment any-size images, encode digit images, decode points.

The `fcnlab` command line (`fcnlab.cli`) is a thin layer over this module.

Segmentation of an image of any size (FCN-8s needs sides that are multiples of 32):

    image HxWx3 uint8
      │ pad bottom and right by reflection      H'xW'x3   (H', W' = the next multiples of 32)
      │ model (raw RGB 0..255 in)               H'xW'x2   class probabilities
      ▼ channel 1, crop [:H, :W]                HxW       foreground probability

Padding mirrors the image across its bottom and right edges (NumPy's "reflect" mode: the last
row/column is not repeated), so the network sees image-like content rather than a black band,
and no pixel of the original is resized or moved; the crop takes exactly the original pixels
back. A pixel is foreground when its probability is strictly above the threshold (as in
evaluate-iou).

Digit images for the CAE encoder are read the MNIST way: grayscale, 28x28 (Pillow bilinear,
antialiased, if the file has another size; the aspect ratio is not kept), pixel / 255 in [0, 1],
a white (bright) digit on a black background. Nothing is inverted: a black-on-white digit
encodes to a point far from the training digits (`looks_inverted` tells the caller).

Decoded latent points become 8-bit grayscale: the decoder's linear output is clipped to [0, 1]
(the range it was trained to reproduce) and mapped to round(255 * value).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from fcnlab.errors import FcnlabError
from fcnlab.fcn import IMAGE_SIZE_MULTIPLE
from fcnlab.fcn_training import predict_foreground
from fcnlab.io import atomic_path
from fcnlab.latent import decode
from fcnlab.model_checks import DIGIT_SIDE_PX
from fcnlab.seg_data import _as_rgb, _open_image
from fcnlab.seg_figures import PREDICTION_FILL
from fcnlab.seg_metrics import predict_masks

OVERLAY_RGBA = PREDICTION_FILL.colors[1]  # the report figures' translucent blue, (r, g, b, alpha) in 0..1


# --- Segmentation ------------------------------------------------------------------------------


def read_rgb_image(path) -> np.ndarray:
    """H x W x 3 uint8 from any 8-bit image Pillow reads (grayscale copied to 3 channels, alpha
    dropped); an unreadable, empty or 16-bit file raises FcnlabError naming it."""
    path = _existing_file(path)
    return _as_rgb(_open_image(path), path)


def padded_size(height: int, width: int, multiple: int = IMAGE_SIZE_MULTIPLE) -> tuple[int, int]:
    """The smallest (H', W') >= (height, width) that are multiples of `multiple`."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def pad_to_multiple(image: np.ndarray, multiple: int = IMAGE_SIZE_MULTIPLE) -> np.ndarray:
    """H x W (x C) -> H' x W' (x C), H' and W' the next multiples of `multiple`, by mirroring the
    image across its bottom and right edges; `padded[:H, :W]` is the image itself."""
    return _pad_to_size(image, *padded_size(*image.shape[:2], multiple))


def _pad_to_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    pad = [(0, height - image.shape[0]), (0, width - image.shape[1])] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect")


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


def segment_image(model, image: np.ndarray, precision: str = "float32") -> np.ndarray:
    """H x W x 3 RGB image (0..255) of any size -> H x W float32 foreground probabilities.

    precision: "float32", or "bfloat16" (faster where the hardware has it; see predict_foreground).
    """
    return segment_images(model, [image], precision=precision)[0]


def segment_images(model, images: list[np.ndarray], batch_size: int = 8,
                   precision: str = "float32") -> list[np.ndarray]:
    """Like `segment_image` for each image; images padded to the same size share a batch."""
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault(model_input_size(model, *image.shape[:2]), []).append(index)
    fg_probs: list[np.ndarray | None] = [None] * len(images)
    for size, indices in by_size.items():
        padded = np.stack([_pad_to_size(images[i], *size) for i in indices])    # N x H' x W' x 3
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


# --- CAE: digit images in, latent points out, and back -------------------------------------------


def digit_image_for_encoder(path) -> np.ndarray:
    """28 x 28 x 1 float32 in [0, 1] from an image file, read as MNIST digits are stored:
    grayscale, a bright digit on a dark background, resized to 28 x 28 if it is another size."""
    path = _existing_file(path)
    image = _open_image(path)
    gray = Image.fromarray(_as_rgb(image, path)).convert("L")                  # H x W
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


def _existing_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise FcnlabError(f"{path}: a folder, not an image file; pass the images in it (e.g. {path}/*.png)")
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found")
    return path


# --- Writing ----------------------------------------------------------------------------------


def save_png(path, pixels: np.ndarray) -> None:
    """H x W (grayscale) or H x W x 3 (RGB) uint8 as a PNG with no metadata, atomically."""
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(pixels)).save(tmp, format="PNG")
