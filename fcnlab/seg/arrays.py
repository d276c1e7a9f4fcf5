"""The prepared segmentation arrays, as the stages after prepare-seg read them back.

train-fcn, evaluate-iou and render-overlays read prepare-seg's arrays with
`load_prepared_segmentation`, which checks them again, and render-overlays reads evaluate-iou's
predictions with `load_test_predictions`; a stale or hand-edited file stops with one line naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_arrays, load_npy
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE

SPLIT_NAMES = ("train", "val", "test")
NAMES_SHOWN = 5  # how many odd values an error lists
PREPARED_FIX = "rerun prepare-seg to rebuild it (dvc repro prepare-seg)"


def load_prepared_segmentation(directory, *names: str) -> dict[str, np.ndarray]:
    """Read `<directory>/<name>.npy` for each of `names` (train_images, train_masks, ...) and
    check them with `check_prepared_segmentation`; every problem is one FcnlabError naming the file."""
    arrays = load_arrays(directory, *names)
    check_prepared_segmentation(arrays, Path(directory))
    return arrays


def check_prepared_segmentation(arrays: dict[str, np.ndarray], origin) -> None:
    """Refuse prepared segmentation arrays that are not what prepare-seg writes.

    `arrays` maps names to arrays: `*_images` must be uint8 N x H x W x 3 (N >= 1, H and W
    multiples of 32), `*_masks` uint8 N x H x W holding only 0 and 1, and each split's masks
    must match its images. `origin` is their directory (errors name `<origin>/<name>.npy`).
    """
    for name, array in arrays.items():
        where = f"{Path(origin) / name}.npy"
        if name.endswith("_images"):
            if array.ndim != 4 or array.shape[-1] != 3 or len(array) == 0:
                raise FcnlabError(f"{where}: shape {array.shape}; prepared images must be N x H x W x 3 "
                                  f"(RGB, N >= 1); {PREPARED_FIX}")
            if array.dtype != np.uint8:
                raise FcnlabError(f"{where}: dtype {array.dtype}; prepared images must be uint8 0..255; "
                                  f"{PREPARED_FIX}")
            height, width = array.shape[1:3]
            if min(height, width) < IMAGE_SIZE_MULTIPLE or height % IMAGE_SIZE_MULTIPLE or width % IMAGE_SIZE_MULTIPLE:
                raise FcnlabError(f"{where}: images are {height} x {width} px; FCN-8s needs sides that are "
                                  f"multiples of {IMAGE_SIZE_MULTIPLE}: set seg.image_size accordingly and "
                                  "rerun prepare-seg")
        elif name.endswith("_masks"):
            if array.ndim != 3 or array.dtype != np.uint8:
                raise FcnlabError(f"{where}: shape {array.shape}, dtype {array.dtype}; prepared masks must be "
                                  f"uint8 N x H x W; {PREPARED_FIX}")
            if array.size and array.max() > 1:
                odd = np.unique(array[array > 1])[:NAMES_SHOWN].tolist()
                raise FcnlabError(f"{where}: mask values {odd}; prepared masks hold only 0 (background) "
                                  f"and 1 (foreground); {PREPARED_FIX}")
    for split in SPLIT_NAMES:
        images, masks = arrays.get(f"{split}_images"), arrays.get(f"{split}_masks")
        if images is not None and masks is not None and images.shape[:3] != masks.shape:
            raise FcnlabError(f"{Path(origin) / split}_masks.npy: shape {masks.shape} does not match the "
                              f"images {images.shape[:3]} in {split}_images.npy; {PREPARED_FIX}")


def load_test_predictions(directory, test_masks: np.ndarray, name: str = "test_fg_probs") -> np.ndarray:
    """evaluate-iou's N x H x W foreground probabilities, checked against the test masks."""
    path = Path(directory) / f"{name}.npy"
    fix = "rerun evaluate-iou to rebuild it (dvc repro evaluate-iou)"
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found; {fix}")
    try:
        probs = load_npy(path)
    except (MemoryError, OverflowError):
        raise FcnlabError(f"{path}: too large to load into memory; {fix}") from None
    if probs.shape != test_masks.shape:
        raise FcnlabError(f"{path}: shape {probs.shape} but the test masks are {test_masks.shape}: the "
                          f"predictions belong to other data; {fix}")
    if not np.issubdtype(probs.dtype, np.floating):
        raise FcnlabError(f"{path}: dtype {probs.dtype}; predictions must be float probabilities; {fix}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise FcnlabError(f"{path}: values outside [0, 1] (or NaN/Inf); predictions must be "
                          f"probabilities; {fix}")
    return probs
