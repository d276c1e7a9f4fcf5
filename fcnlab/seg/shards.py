"""prepare-seg's output folder: each split as numbered shards, written and read one image at a time.

A split is cut into shards of at most `shard_pixels` pixels (one image more than that gets a
shard of its own); each shard is a group of the ragged layout of `fcnlab.seg.arrays`:

    train-00000-of-00003_shapes.npy    n x 2 int64   (height, width) of the shard's images
    train-00000-of-00003_images.npy    p x 3 uint8   their RGB pixels, one image after another
    train-00000-of-00003_masks.npy     p uint8       their masks, 1 foreground, 0 background
    train-00001-of-00003_...
    geometry.json                                    the training scale (fcnlab.seg.geometry)

Writing appends each image to its shard's files as it comes and holds none of them, so
prepare-seg's memory does not grow with the data set or the shard size; the folder is replaced
atomically (`atomic_path`), so a crash leaves the old output or none. Same images and cap, same
bytes (as `np.save` writes them). Reading checks every shard and gives each split as sequences
of images and masks read one at a time (`load_prepared_split`,
`fcnlab.seg.arrays.RaggedArrays`), and hands train-fcn the shard files (`ShardFiles`), which
tf.data reads itself
(`fcnlab.seg.training.training_stream`). Before writing, `check_free_space` compares the bytes
the output will take (`prepared_bytes`, from the images' sizes alone) with the free disk space.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import atomic_path
from fcnlab.seg.arrays import (PREPARED_FIX, RaggedArrays, SegSplit, SplitStats, check_binary_masks,
                               check_uint8, load_ragged_file, load_shapes_file, ragged_arrays, write_geometry)

SHARD_NAME = "{split}-{index:05d}-of-{count:05d}"
NPY_HEADER_BYTES = 128            # np.save's header for these arrays (version 1.0: 128 bytes)
MAX_SHARDS = 100_000              # five digits in the names
BYTES_PER_PIXEL = 4               # 3 image bytes and 1 mask byte


@dataclass(frozen=True)
class ShardFiles:
    """One shard's pixel files as tf.data reads them: raw bytes after an `.npy` header."""

    images: Path                  # p x 3 uint8 after `images_offset` header bytes
    masks: Path                   # p uint8 after `masks_offset` header bytes
    shapes: np.ndarray            # n x 2 (height, width) of its images
    images_offset: int
    masks_offset: int
    foreground_pixels: int        # mask pixels that are 1


# --- Writing ----------------------------------------------------------------------------------


def save_prepared_segmentation(directory, splits: dict, geometry: dict,
                               shard_pixels: int = 16_000_000) -> dict[str, SplitStats]:
    """Write each split (any iterable of (H x W x 3 uint8 image, H x W uint8 mask) pairs, read
    once, in order) as shards of at most `shard_pixels` pixels, and `geometry.json`, into
    `directory`, replacing it atomically. Returns each split's counts."""
    with atomic_path(directory) as tmp:
        tmp.mkdir()
        stats = {name: write_split_shards(tmp, name, pairs, shard_pixels) for name, pairs in splits.items()}
        write_geometry(tmp, geometry)
    return stats


def write_split_shards(directory: Path, name: str, pairs, shard_pixels: int) -> SplitStats:
    """Split `name`'s pairs as shards in `directory`, each pair written as it comes."""
    stats, shard_stems, shard = SplitStats(), [], None
    try:
        for image, mask in pairs:
            size = image.shape[0] * image.shape[1]
            if shard is not None and shard.pixels + size > shard_pixels:
                shard_stems.append(shard.close())
                shard = None
            if shard is None:
                shard = _ShardWriter(directory, name, len(shard_stems))
            shard.add(image, mask)
            stats.add(image, mask)
    except BaseException:
        if shard is not None:                       # its files go with the unfinished folder
            shard.close()
        raise
    if shard is None:
        raise ValueError(f"split {name!r} has no images; every split needs at least one")
    shard_stems.append(shard.close())
    for index, stem in enumerate(shard_stems):       # the final names carry the shard count
        final = SHARD_NAME.format(split=name, index=index, count=len(shard_stems))
        for kind in ("shapes", "images", "masks"):
            (directory / f"{stem}_{kind}.npy").rename(directory / f"{final}_{kind}.npy")
    return stats


class _ShardWriter:
    """One shard's `_images.npy` and `_masks.npy` written a pair at a time: a header sized for any
    length first, rewritten with the real length at `close`, which also writes `_shapes.npy`.
    The files are those `np.save` writes for the joined arrays (its header leaves room for the
    length to grow, so the header's size does not change)."""

    def __init__(self, directory: Path, name: str, index: int):
        if index >= MAX_SHARDS:
            raise FcnlabError(f"{directory}: split {name} needs more than {MAX_SHARDS} shards; "
                              "raise seg.shard_megapixels in params.yaml")
        self.directory, self.stem = directory, f".{name}-{index:05d}-unfinished"
        self.files = {kind: open(directory / f"{self.stem}_{kind}.npy", "wb") for kind in ("images", "masks")}
        self.channels = {"images": (3,), "masks": ()}
        for kind, file in self.files.items():
            file.write(_npy_header((0,) + self.channels[kind]))
        self.shapes: list[tuple[int, int]] = []        # one shard's images: bounded by shard_pixels
        self.pixels = 0

    def add(self, image: np.ndarray, mask: np.ndarray) -> None:
        if image.shape[:2] != mask.shape[:2] or image.shape[2:] != (3,) or mask.ndim != 2:
            raise ValueError(f"{self.stem}: image of shape {image.shape} with a mask of shape {mask.shape}; "
                             "need H x W x 3 and H x W")
        if image.dtype != np.uint8 or mask.dtype != np.uint8:
            raise ValueError(f"{self.stem}: image {image.dtype} and mask {mask.dtype}; both must be uint8")
        self.files["images"].write(np.ascontiguousarray(image).tobytes())   # H x W x 3, row by row
        self.files["masks"].write(np.ascontiguousarray(mask).tobytes())     # H x W
        self.shapes.append(image.shape[:2])
        self.pixels += image.shape[0] * image.shape[1]

    def close(self) -> str:
        for kind, file in self.files.items():
            header = _npy_header((self.pixels,) + self.channels[kind])
            file.seek(0)
            if len(header) != len(_npy_header((0,) + self.channels[kind])):
                raise ValueError(f"{self.stem}_{kind}: the .npy header changed size")
            file.write(header)
            file.close()
        np.save(self.directory / f"{self.stem}_shapes.npy", np.array(self.shapes, np.int64).reshape(-1, 2),
                allow_pickle=False)
        return self.stem


def _npy_header(shape: tuple) -> bytes:
    """The header `np.save` writes for a C-order uint8 array of `shape`."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buffer.getvalue()


# --- The disk-space check ---------------------------------------------------------------------


def prepared_bytes(sizes) -> int:
    """An upper bound on the bytes of prepare-seg's output for images of `sizes` ((H, W) each, at
    the training scale): their pixels, their shapes, and at most one shard's headers per image."""
    sizes = list(sizes)
    pixels = sum(height * width for height, width in sizes)
    return BYTES_PER_PIXEL * pixels + len(sizes) * (16 + 3 * NPY_HEADER_BYTES) + 4096


def check_free_space(directory, needed_bytes: int, free_bytes: int) -> None:
    """Refuse to start writing `needed_bytes` into `directory` when only `free_bytes` are free there."""
    if needed_bytes > free_bytes:
        raise FcnlabError(
            f"{directory}: prepare-seg's output needs about {needed_bytes / 1e9:.3g} GB ({needed_bytes} bytes) "
            f"but only {free_bytes / 1e9:.3g} GB ({free_bytes} bytes) are free on its disk (the old output "
            "stays until the new one is complete); free some space or move the workspace to a larger disk, "
            "or lower seg.image_size or use fewer images")


# --- Reading ----------------------------------------------------------------------------------


def load_prepared_split(directory, name: str) -> SegSplit:
    """Split `name` ("train", "val" or "test") of prepare-seg's folder, every shard checked:
    `images[i]`, `masks[i]` are read from the files when used (`RaggedArrays`), `shards` the files."""
    directory = Path(directory)
    images, masks, shards = [], [], []
    for stem in shard_stems(directory, name):
        shard_images, shard_masks, files = _load_shard(directory, stem)
        images.append(shard_images)
        masks.append(shard_masks)
        shards.append(files)
    return SegSplit(RaggedArrays.joined(images), RaggedArrays.joined(masks), shards)


def shard_stems(directory: Path, name: str) -> list[str]:
    """The shard names of split `name`, in order; a missing, extra or misnamed shard is an error."""
    found = sorted(path.name[:-len("_shapes.npy")] for path in directory.glob(f"{name}-*_shapes.npy"))
    if not found:
        old = directory / f"{name}_shapes.npy"
        if old.is_file():
            raise FcnlabError(f"{old}: the unsharded layout of an older fcnlab; {PREPARED_FIX}")
        raise FcnlabError(f"{directory / SHARD_NAME.format(split=name, index=0, count=1)}_shapes.npy: "
                          f"file not found (no shard of the {name} split); {PREPARED_FIX}")
    match = re.fullmatch(rf"{re.escape(name)}-\d{{5}}-of-(\d{{5}})", found[0])
    count = int(match.group(1)) if match else 0
    expected = [SHARD_NAME.format(split=name, index=index, count=count) for index in range(count)]
    if found != expected:
        odd = sorted(set(found) ^ set(expected))[0]
        state = "missing" if odd in expected else "not a shard of this split"
        raise FcnlabError(f"{directory / odd}_shapes.npy: {state} (the {name} split has "
                          f"{len(found)} shard(s): {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}); "
                          f"{PREPARED_FIX}")
    return found


def _load_shard(directory: Path, stem: str):
    """(images, masks, ShardFiles) of one shard, every file checked; the images and masks are
    `RaggedArrays`, each read when used."""
    shapes = load_shapes_file(directory / f"{stem}_shapes.npy", PREPARED_FIX)
    images_path, masks_path = directory / f"{stem}_images.npy", directory / f"{stem}_masks.npy"
    images = ragged_arrays(images_path, shapes, channels=3, fix=PREPARED_FIX)
    check_uint8(images_path, images, PREPARED_FIX)
    masks = ragged_arrays(masks_path, shapes, channels=None, fix=PREPARED_FIX)
    checked = load_ragged_file(masks_path, shapes, channels=None, fix=PREPARED_FIX)
    check_binary_masks(masks_path, checked)        # a map of its own, let go after the check
    foreground_pixels = int(np.count_nonzero(checked))
    del checked
    files = ShardFiles(images_path, masks_path, shapes, images_offset=images.header_bytes[0],
                       masks_offset=masks.header_bytes[0], foreground_pixels=foreground_pixels)
    return images, masks, files


def shards_foreground_fraction(shards: list[ShardFiles]) -> float:
    """The foreground share of the shards' mask pixels, from the counts taken when they were loaded."""
    pixels = sum(int((files.shapes[:, 0] * files.shapes[:, 1]).sum()) for files in shards)
    if pixels == 0:
        raise ValueError("shards_foreground_fraction needs at least one mask pixel, got none")
    return sum(files.foreground_pixels for files in shards) / pixels
