"""Predict with FCN-8s: foreground probabilities for images of any size, batch by batch.

    image HxWx3 uint8
      │ pad bottom and right by reflection      H'xW'x3   (H', W' = the next multiples of 32)
      │ model (raw RGB 0..255 in)               H'xW'x2   class probabilities
      ▼ channel 1, crop [:H, :W]                HxW       foreground probability

Padding mirrors the image across its bottom and right edges (NumPy's "reflect" mode), so the
network sees image-like content rather than a black band, and no pixel of the original is
resized or moved; the crop takes exactly the original pixels back (`predict_images`).

Prediction runs `fast_twin(model)` (`fcnlab.seg.speedups`) through `predict_on_batch`, which is
faster than Keras' `predict` on a CPU; the probabilities equal `model.predict`'s to float32
rounding. precision "bfloat16" computes under Keras' mixed_bfloat16 policy (docs/benchmarks.md).
"""

from __future__ import annotations

import weakref

import numpy as np

from fcnlab.core.batches import predict_in_batches
from fcnlab.core.errors import FcnlabError
from fcnlab.seg.geometry import pad_to_size, padded_size
from fcnlab.seg.speedups import check_precision, fast_twin, is_fcn8s, with_dtype_policy
from fcnlab.seg.tiling import needs_tiling, predict_tiled


def predict_foreground(model, images: np.ndarray, batch_size: int = 8, precision: str = "float32") -> np.ndarray:
    """N x H x W x 3 images -> N x H x W float32 foreground probabilities (softmax channel 1).

    Runs `fast_twin(model)` (or, for a model that is not fcnlab's FCN-8s, `model` itself) batch
    by batch; with precision "float32" the probabilities equal `model.predict`'s to float32
    rounding. "bfloat16" computes with Keras' mixed_bfloat16 policy (weights kept in float32,
    products in bfloat16): faster on CPUs with AVX512-BF16 or AMX and on recent GPUs, slower on
    CPUs without them; probabilities then move slightly (docs/benchmarks.md).
    """
    return predict_in_batches(_prediction_twin(model, precision), images, batch_size)[..., 1]


# model -> {precision: (its bfloat16 copy or None, its fast twin or None)}; kept while the model
# lives (the values never hold the model itself), so calls on the same model reuse one traced
# graph (`segment_files` predicts chunk by chunk).
_PREDICTION_TWINS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _prediction_twin(model, precision: str):
    check_precision(precision)
    twins = _PREDICTION_TWINS.setdefault(model, {})
    if precision not in twins:
        copy = None if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        source = model if copy is None else copy
        twins[precision] = (copy, fast_twin(source) if is_fcn8s(source) else None)
    copy, twin = twins[precision]
    if copy is not None:                               # bring the copy's weights up to date
        copy.set_weights(model.get_weights())
    source = model if copy is None else copy
    return source if twin is None else twin            # a model that is not FCN-8s runs as it is


def predict_images(model, images, batch_size: int = 8, precision: str = "float32") -> list[np.ndarray]:
    """H x W x 3 RGB images (0..255) of any sizes -> one H x W float32 foreground-probability map each.

    Each image is padded to the next multiples of 32 (see the module docstring); images padded
    to the same size share batches. An image too large for one pass (`needs_tiling`) is
    predicted in overlapping tiles stitched to the same result (`fcnlab.seg.tiling`).
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    fg_probs: list[np.ndarray | None] = [None] * len(images)
    for index, image in enumerate(images):
        if needs_tiling(*image.shape[:2]) and tuple(model.inputs[0].shape[1:3]) == (None, None):
            fg_probs[index] = predict_tiled(lambda tiles: predict_foreground(model, tiles, batch_size, precision),
                                            image)
        else:
            by_size.setdefault(model_input_size(model, *image.shape[:2]), []).append(index)
    for size, indices in by_size.items():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            padded = np.stack([pad_to_size(np.asarray(images[i]), *size) for i in chunk])  # n x H' x W' x 3
            probabilities = predict_foreground(model, padded, batch_size, precision)       # n x H' x W'
            for i, probability in zip(chunk, probabilities):
                height, width = images[i].shape[:2]
                fg_probs[i] = probability[:height, :width]                              # H x W
    return fg_probs


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
