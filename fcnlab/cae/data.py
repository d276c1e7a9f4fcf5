"""The CAE's digits: the prepared subset, written by prepare-mnist-subset and read back.

Whatever the source (`fcnlab.core.mnist`), `prepare_mnist_subset` keeps the chosen digits (the seed keeps 1, 5, 6)
and returns float32 images in [0, 1] shaped N x 28 x 28 x 1 with integer labels.

The stages after it read those arrays back with `load_prepared_digits`, which checks them
again (a hand-edited or stale `data/prepared/mnist` stops with one line, not a traceback).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_arrays

DIGIT_SIDE_PX = 28   # MNIST digits are 28 x 28 pixels: the CAE's input size
PREPARED_FIX = "rerun prepare-mnist-subset to rebuild it (dvc repro prepare-mnist-subset)"


@dataclass
class DigitSplits:
    train_x: np.ndarray  # N x 28 x 28 x 1, float32 in [0, 1]
    train_y: np.ndarray  # N, int64 digit labels
    test_x: np.ndarray
    test_y: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train_x": self.train_x, "train_y": self.train_y,
                "test_x": self.test_x, "test_y": self.test_y}


def prepare_mnist_subset(x_train, y_train, x_test, y_test, digits: list[int],
                         origin: str) -> DigitSplits:
    """Validate raw MNIST arrays, keep `digits`, scale to float32 [0, 1], add a channel axis."""
    splits = []
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = validated_digits(origin, name, x, y)
        keep = np.isin(y, digits)
        absent = [d for d in digits if not np.any(y == d)]
        if absent:
            raise FcnlabError(
                f"{origin}: {name} split has no images of digit(s) {absent}; "
                f"change mnist.digits in params.yaml (present: {sorted(set(y.tolist()))})"
            )
        splits += [(x[keep].astype(np.float32) / 255.0)[..., None], y[keep].astype(np.int64)]
    return DigitSplits(*splits)


def validated_digits(origin: str, split: str, x: np.ndarray, y: np.ndarray):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (DIGIT_SIDE_PX, DIGIT_SIDE_PX) or len(x) == 0:
        raise FcnlabError(f"{origin}: x_{split} has shape {x.shape}; MNIST images must be N x 28 x 28 "
                          "with N >= 1; save them in that shape")
    if y.ndim != 1 or len(y) != len(x):
        raise FcnlabError(
            f"{origin}: y_{split} has shape {y.shape} for {len(x)} images; labels must be a vector of length N; "
            "save one integer label per image")
    if not np.issubdtype(y.dtype, np.integer):
        raise FcnlabError(f"{origin}: y_{split} has dtype {y.dtype}; labels must be integers 0..9; "
                          "save them as integers (e.g. y.astype(np.int64))")
    if y.min() < 0 or y.max() > 9:
        raise FcnlabError(f"{origin}: y_{split} holds labels {y.min()}..{y.max()}; labels must be the "
                          "digits 0..9; fix the labels and save again")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise FcnlabError(f"{origin}: x_{split} has dtype {x.dtype}; images must be numeric pixels 0..255; "
                          "save them as uint8")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 255:
        raise FcnlabError(f"{origin}: x_{split} has pixels outside 0..255 (or NaN/Inf); "
                          "save raw MNIST pixels as uint8 0..255")
    return x, y


def load_prepared_digits(directory, *names: str) -> dict[str, np.ndarray]:
    """Read `<directory>/<name>.npy` for each of `names` (train_x, train_y, test_x, test_y) and
    check them with `check_prepared_digits`; every problem is one FcnlabError naming the file."""
    arrays = load_arrays(directory, *names)
    check_prepared_digits(arrays, Path(directory))
    return arrays


def check_prepared_digits(arrays: dict[str, np.ndarray], origin) -> None:
    """Refuse prepared MNIST arrays that are not what `prepare_mnist_subset` writes.

    `arrays` maps names to arrays: `*_x` must be float32 N x 28 x 28 x 1 in [0, 1] (N >= 1),
    `*_y` integer digits 0..9 of length N; a train_x/train_y (test_x/test_y) pair must agree
    in N. `origin` is the directory the arrays came from (errors name `<origin>/<name>.npy`).
    """
    for name, array in arrays.items():
        where = f"{Path(origin) / name}.npy"
        if name.endswith("_x"):
            if array.ndim != 4 or array.shape[1:] != (DIGIT_SIDE_PX, DIGIT_SIDE_PX, 1) or len(array) == 0:
                raise FcnlabError(f"{where}: shape {array.shape}; prepared digits must be N x 28 x 28 x 1 "
                                  f"(N >= 1); {PREPARED_FIX}")
            if array.dtype != np.float32:
                raise FcnlabError(f"{where}: dtype {array.dtype}; prepared digits must be float32; {PREPARED_FIX}")
            if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
                raise FcnlabError(f"{where}: pixels outside [0, 1] (or NaN/Inf); prepared digits are "
                                  f"scaled to [0, 1]; {PREPARED_FIX}")
        elif name.endswith("_y"):
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer) or len(array) == 0:
                raise FcnlabError(f"{where}: shape {array.shape}, dtype {array.dtype}; prepared labels "
                                  f"must be a non-empty vector of integers; {PREPARED_FIX}")
            if array.min() < 0 or array.max() > 9:
                raise FcnlabError(f"{where}: labels {array.min()}..{array.max()}; prepared labels must be "
                                  f"digits 0..9; {PREPARED_FIX}")
    for split in ("train", "test"):
        x, y = arrays.get(f"{split}_x"), arrays.get(f"{split}_y")
        if x is not None and y is not None and len(x) != len(y):
            raise FcnlabError(f"{Path(origin) / split}_y.npy: {len(y)} labels for {len(x)} images in "
                              f"{split}_x.npy; {PREPARED_FIX}")


def digit_counts(splits: DigitSplits) -> dict:
    """{"train": {"1": 400, ...}, "test": {...}, "total": {...}} for the summary metrics file."""
    counts = {}
    for name, y in (("train", splits.train_y), ("test", splits.test_y)):
        values, numbers = np.unique(y, return_counts=True)
        counts[name] = {str(v): int(n) for v, n in zip(values, numbers)}
        counts[name]["all"] = int(len(y))
    return counts
