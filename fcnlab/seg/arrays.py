"""Images and masks of any sizes in one flat "ragged" layout, on disk and back.

A group of images (a shard of a prepared split, `fcnlab.seg.shards`, or evaluate-iou's
predictions) is three `.npy` files that hold images of different sizes without padding them:

    <name>_shapes.npy   N x 2 int64        (height, width) of each image, in order
    <name>_images.npy   P x 3 uint8        every image's RGB pixels, row by row, one after another
    <name>_masks.npy    P uint8            every mask's pixels the same way: 1 foreground, 0 background

(P = the sum of height x width.) Readers see a file as a sequence of arrays (`RaggedArrays`):
`arrays[i]` reads image i's bytes when asked for, so it is read from disk only when used and
leaves memory with it; per image only its size and place in the file are held.
Everything is checked on the way in; a stale or hand-edited file stops with one line naming
it. Beside the shards, `geometry.json` records the training scale the images were brought to
(`fcnlab.seg.geometry`).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_json, load_npy
from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE, RESIZE_POLICIES

SPLIT_NAMES = ("train", "val", "test")
GEOMETRY_FILE = "geometry.json"
# The training sizes a geometry record may hold: multiples of 32 (FCN-8s pools five times).
MIN_GEOMETRY_SIZE, MAX_GEOMETRY_SIZE = IMAGE_SIZE_MULTIPLE, 8192
NAMES_SHOWN = 5  # how many odd values an error lists
PREPARED_FIX = "rerun prepare-seg to rebuild it (dvc repro prepare-seg)"
PREDICTIONS_FIX = "rerun evaluate-iou to rebuild it (dvc repro evaluate-iou)"


@dataclass
class SegSplit:
    """One split: `images[i]` is H_i x W_i x 3 uint8 RGB, `masks[i]` H_i x W_i uint8 {0, 1}."""

    images: Sequence[np.ndarray]                 # a list, or a file's `RaggedArrays`
    masks: Sequence[np.ndarray]
    shards: list = field(default_factory=list)   # the ShardFiles it was read from (fcnlab.seg.shards)

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self):
        """(image, mask) pairs, in order."""
        return zip(self.images, self.masks)

    def shapes(self) -> np.ndarray:
        """N x 2 int64: (height, width) of each image."""
        if isinstance(self.images, RaggedArrays):
            return self.images.shapes.copy()
        return np.array([image.shape[:2] for image in self.images], np.int64).reshape(-1, 2)

    def common_shape(self) -> tuple[int, int] | None:
        """(H, W) if every image has that size, else None."""
        shapes = {image.shape[:2] for image in self.images}
        return shapes.pop() if len(shapes) == 1 else None

    def stacked(self) -> tuple[np.ndarray, np.ndarray]:
        """(N x H x W x 3 images, N x H x W masks) for a split whose images share one size."""
        if self.common_shape() is None:
            raise ValueError("the images have different sizes; they cannot be stacked into one array")
        return np.stack(self.images), np.stack(self.masks)

    def foreground_fraction(self) -> float:
        return foreground_fraction(self.masks)


def foreground_fraction(masks) -> float:
    """Share of foreground (non-zero) pixels in `masks`: a mask array, or a list of masks of any sizes."""
    arrays = [np.asarray(m) for m in masks] if isinstance(masks, (list, tuple)) else [np.asarray(masks)]
    total = sum(a.size for a in arrays)
    if total == 0:
        raise ValueError("foreground_fraction needs at least one mask pixel, got none")
    return sum(int(np.count_nonzero(a)) for a in arrays) / total


@dataclass
class SplitStats:
    """Counts gathered one image at a time, for the prepare-seg summary."""

    count: int = 0
    pixels: int = 0
    foreground_pixels: int = 0
    heights: tuple[int, int] | None = None     # (smallest, largest)
    widths: tuple[int, int] | None = None

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        height, width = image.shape[:2]
        self.count += 1
        self.pixels += height * width
        self.foreground_pixels += int(np.count_nonzero(mask))
        self.heights = _widened(self.heights, height)
        self.widths = _widened(self.widths, width)

    def foreground_fraction(self) -> float:
        if self.pixels == 0:
            raise ValueError("foreground_fraction needs at least one mask pixel, got none")
        return self.foreground_pixels / self.pixels

    def summary(self) -> dict:
        return {"count": self.count, "foreground_fraction": round(self.foreground_fraction(), 6),
                "height_px": list(self.heights), "width_px": list(self.widths)}


def _widened(low_high: tuple[int, int] | None, value: int) -> tuple[int, int]:
    return (value, value) if low_high is None else (min(low_high[0], value), max(low_high[1], value))


# --- Writing ----------------------------------------------------------------------------------


def write_geometry(directory, geometry: dict) -> None:
    """`geometry.json` (the training scale: resize policy and image size) into `directory`."""
    (Path(directory) / GEOMETRY_FILE).write_text(json.dumps(geometry, indent=2, sort_keys=True) + "\n")


def save_split_arrays(directory, name: str, **arrays: list[np.ndarray]) -> None:
    """Write `<name>_shapes.npy` and, for each keyword, `<name>_<keyword>.npy` in the ragged layout.

    Every keyword's arrays must have the same (height, width) sequence: images (H x W x C) and
    their masks or probabilities (H x W).
    """
    directory = Path(directory)
    lists = list(arrays.values())
    shapes = np.array([array.shape[:2] for array in lists[0]], dtype=np.int64).reshape(-1, 2)
    for key, items in arrays.items():
        if [item.shape[:2] for item in items] != [tuple(shape) for shape in shapes]:
            raise ValueError(f"{name}_{key}: its arrays' sizes differ from the first keyword's")
        flat = [np.asarray(item).reshape(item.shape[0] * item.shape[1], -1) for item in items]
        joined = np.concatenate(flat) if flat else np.zeros((0, 1), np.uint8)
        if joined.shape[1] == 1:
            joined = joined[:, 0]
        np.save(directory / f"{name}_{key}.npy", np.ascontiguousarray(joined), allow_pickle=False)
    np.save(directory / f"{name}_shapes.npy", shapes, allow_pickle=False)


def save_ragged_stream(directory, name: str, key: str, shapes: np.ndarray, arrays, dtype) -> None:
    """Write `<name>_<key>.npy` and `<name>_shapes.npy` as `save_split_arrays` does, but from H x W
    arrays that come one at a time (in the order and sizes of `shapes`, N x 2): the same bytes,
    without holding them all."""
    directory = Path(directory)
    shapes = np.asarray(shapes, np.int64).reshape(-1, 2)
    path = directory / f"{name}_{key}.npy"
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": (int(np.sum(shapes[:, 0] * shapes[:, 1])),)}
    written = 0
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, header)
        for array, shape in zip(arrays, shapes):
            if np.shape(array)[:2] != tuple(shape):
                raise ValueError(f"{path}: array {written} has shape {np.shape(array)}, expected {tuple(shape)}")
            file.write(np.ascontiguousarray(array, dtype=dtype).tobytes())
            written += 1
    if written != len(shapes):
        raise ValueError(f"{path}: {written} arrays written for {len(shapes)} shapes")
    np.save(directory / f"{name}_shapes.npy", shapes, allow_pickle=False)


# --- Reading ----------------------------------------------------------------------------------


def load_geometry(path, fix: str = PREPARED_FIX) -> dict:
    """A geometry record ({"resize", "image_size", ...}) from prepare-seg's folder or a model's
    sidecar; `fix` is what the error tells the user to do."""
    path = Path(path)
    path = path / GEOMETRY_FILE if path.is_dir() else path
    record = load_json(path)
    size = record.get("image_size") if isinstance(record, dict) else None
    if (not isinstance(record, dict) or record.get("resize") not in RESIZE_POLICIES
            or isinstance(size, bool) or not isinstance(size, int)
            or not MIN_GEOMETRY_SIZE <= size <= MAX_GEOMETRY_SIZE or size % IMAGE_SIZE_MULTIPLE):
        raise FcnlabError(f"{path}: not a geometry record ({{\"resize\": one of {', '.join(RESIZE_POLICIES)}, "
                          f"\"image_size\": a multiple of {IMAGE_SIZE_MULTIPLE} from {MIN_GEOMETRY_SIZE} to "
                          f"{MAX_GEOMETRY_SIZE}}}, got {_shown(record)}); {fix}")
    return record


def _shown(value, limit: int = 120) -> str:
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def load_test_predictions(directory, test: SegSplit, name: str = "test") -> RaggedArrays:
    """evaluate-iou's foreground probabilities, one H x W float32 array per test image, checked
    against the test split's sizes (one image at a time)."""
    directory = Path(directory)
    path = directory / f"{name}_fg_probs.npy"
    shapes = load_shapes_file(directory / f"{name}_shapes.npy", PREDICTIONS_FIX)
    if not np.array_equal(shapes, test.shapes()):
        raise FcnlabError(f"{directory / f'{name}_shapes.npy'}: {len(shapes)} predictions whose sizes do not "
                          f"match the {len(test)} test images: the predictions belong to other data; "
                          f"{PREDICTIONS_FIX}")
    probs = ragged_arrays(path, shapes, channels=None, fix=PREDICTIONS_FIX)
    if not np.issubdtype(probs.dtype, np.floating):
        raise FcnlabError(f"{path}: dtype {probs.dtype}; predictions must be float probabilities; {PREDICTIONS_FIX}")
    for image_probs in probs:
        if not np.all(np.isfinite(image_probs)) or image_probs.min() < 0 or image_probs.max() > 1:
            raise FcnlabError(f"{path}: values outside [0, 1] (or NaN/Inf); predictions must be "
                              f"probabilities; {PREDICTIONS_FIX}")
    return probs


def load_shapes_file(path: Path, fix: str) -> np.ndarray:
    shapes = _load(path, fix)
    if (shapes.ndim != 2 or shapes.shape[1] != 2 or len(shapes) == 0
            or not np.issubdtype(shapes.dtype, np.integer) or shapes.min() < 1):
        raise FcnlabError(f"{path}: shape {shapes.shape}, dtype {shapes.dtype}; it must list each image's "
                          f"(height, width) as N x 2 positive integers (N >= 1); {fix}")
    return shapes.astype(np.int64)


def load_ragged_file(path: Path, shapes: np.ndarray, channels: int | None, fix: str) -> np.ndarray:
    array = _load(path, fix, mmap=True)
    pixels = int(np.sum(shapes[:, 0] * shapes[:, 1]))
    expected = (pixels, channels) if channels else (pixels,)
    if array.shape != expected:
        raise FcnlabError(f"{path}: shape {array.shape}, but the {len(shapes)} image sizes in "
                          f"{path.name.rsplit('_', 1)[0]}_shapes.npy need {expected}; {fix}")
    return array


def _load(path: Path, fix: str, mmap: bool = False) -> np.ndarray:
    if not path.is_file():
        raise FcnlabError(f"{path}: file not found; {fix}")
    if mmap:
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError, MemoryError, OverflowError) as err:
            raise FcnlabError(f"{path}: truncated or corrupt .npy file ({type(err).__name__}: {err}); "
                              f"{fix}") from None
    try:
        return load_npy(path)
    except (MemoryError, OverflowError):
        raise FcnlabError(f"{path}: too large to load into memory; {fix}") from None


def check_uint8(path: Path, array: np.ndarray, fix: str) -> None:
    if array.dtype != np.uint8:
        raise FcnlabError(f"{path}: dtype {array.dtype}; prepared images must be uint8 0..255; {fix}")


def check_binary_masks(path: Path, masks: np.ndarray) -> None:
    if masks.dtype != np.uint8:
        raise FcnlabError(f"{path}: dtype {masks.dtype}; prepared masks must be uint8; {PREPARED_FIX}")
    if masks.size and masks.max() > 1:
        odd = np.unique(masks[masks > 1])[:NAMES_SHOWN].tolist()
        raise FcnlabError(f"{path}: mask values {odd}; prepared masks hold only 0 (background) "
                          f"and 1 (foreground); {PREPARED_FIX}")


class RaggedArrays(Sequence):
    """The arrays of ragged `.npy` files (P x C, or P when `channels` is None) as one read-only
    sequence, file after file: `arrays[i]` is H_i x W_i (x C), read from its file when asked for,
    a copy of its own that leaves memory with it (a memory map of the whole file would keep every
    page ever touched resident, growing with the data; one map per array would keep a file
    descriptor open per array held). Per image it holds its (height, width), file number and
    byte offset: 28 bytes."""

    def __init__(self, paths: list[Path], header_bytes: list[int], dtype, shapes: list[np.ndarray],
                 channels: int | None):
        self.paths, self.header_bytes = [Path(path) for path in paths], list(header_bytes)
        self.dtype, self.channels = np.dtype(dtype), channels
        self.shapes = np.concatenate(shapes).astype(np.int64).reshape(-1, 2)         # N x 2
        self._file = np.repeat(np.arange(len(paths), dtype=np.int32), [len(rows) for rows in shapes])
        offsets = []
        for header, rows in zip(header_bytes, shapes):
            pixels = rows[:, 0] * rows[:, 1]
            offsets.append(header + (np.cumsum(pixels) - pixels) * self.dtype.itemsize * (channels or 1))
        self._offsets = np.concatenate(offsets).astype(np.int64)

    @classmethod
    def joined(cls, parts: list[RaggedArrays]) -> RaggedArrays:
        """One sequence of `parts`' arrays, part after part (all of one dtype and channels)."""
        return cls([path for part in parts for path in part.paths],
                   [header for part in parts for header in part.header_bytes], parts[0].dtype,
                   [part.shapes for part in parts], parts[0].channels)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"array {i} of {len(self)}")
        height, width = (int(side) for side in self.shapes[i])
        shape = (height, width) + ((self.channels,) if self.channels else ())
        count = height * width * (self.channels or 1)
        return np.fromfile(self.paths[self._file[i]], self.dtype, count, offset=int(self._offsets[i])).reshape(shape)


def ragged_arrays(path: Path, shapes: np.ndarray, channels: int | None, fix: str) -> RaggedArrays:
    """`path`'s arrays (`RaggedArrays`), its header and length checked against `shapes` (N x 2)."""
    array = load_ragged_file(path, shapes, channels, fix)          # a map of the header's claims only
    if not array.flags.c_contiguous:                             # the arrays are cut in C order
        raise FcnlabError(f"{path}: stored in Fortran order, not as np.save writes it; {fix}")
    return RaggedArrays([path], [int(array.offset)], array.dtype, [shapes], channels)
