"""Segmentation data for FCN-8s: three sources, one output layout.

    demo     generated offline: real MNIST digits camouflaged in clutter painted like them
             (see `fcnlab.seg.demo_scenes`); the digit is the foreground
    npy      the seed's files in one folder:
                 seg_train_imgs.npy     N x H x W x 3 images
                 seg_train_labels.npy   N x H x W x 2 one-hot labels, channel 1 = foreground
                 seg_test_imgs.npy      M x H' x W' x 3 (read only with the test labels)
                 seg_test_labels.npy    optional; without it the test split IS the val split
    folder   images/ and masks/ subfolders whose files pair up by name (stem), e.g.
             images/017.png + masks/017.png; any format Pillow reads

Whatever the source, the result is a `SegSource`: per split, the images' sizes (known before
any pixel is read: from the image files' headers, the .npy headers, or the params) and a
reader that yields its (image, mask) pairs one at a time: uint8 RGB images H x W x 3 and uint8
masks H x W with 1 = foreground, 0 = background, at the training scale of the resize policy
(`fcnlab.seg.geometry`): S x S for "square" (the seed's), longer side S for "keep_aspect", the
stored size for "none". Demo scenes are drawn at S x S. prepare-seg streams the pairs into
shards (`fcnlab.seg.shards`), so it never holds a split; `in_memory()` collects them for
small data and tests. Splits are seeded: the same files, fractions and seed give the same split.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PIL import Image

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import as_rgb, image_size_as_shown, open_image
from fcnlab.core.mnist import embedded_mnist
from fcnlab.seg import demo_scenes
from fcnlab.seg.arrays import SPLIT_NAMES, SegSplit, SplitStats
from fcnlab.seg.geometry import mask_to_training_scale, to_training_scale, training_scale_size

SOURCES = ("demo", "npy", "folder")
TRAIN_IMAGES, TRAIN_LABELS = "seg_train_imgs.npy", "seg_train_labels.npy"
TEST_IMAGES, TEST_LABELS = "seg_test_imgs.npy", "seg_test_labels.npy"
NAMES_SHOWN = 5  # how many offending file names an error lists
CHECK_CHUNK_BYTES = 64 * 2 ** 20  # .npy sources are checked this many bytes at a time


@dataclass
class SegSplits:
    train: SegSplit
    val: SegSplit
    test: SegSplit
    test_split_note: str      # where the test split came from, for the summary

    def splits(self) -> dict[str, SegSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}


@dataclass
class SegSource:
    """A data set to stream: each split's image sizes at the training scale, and its pairs."""

    sizes: dict[str, list[tuple[int, int]]]             # split -> (H, W) of each image, in order
    read: Callable[[str], Iterator[tuple[np.ndarray, np.ndarray]]]   # split -> its (image, mask) pairs
    test_split_note: str                                 # where the test split came from

    def splits(self) -> dict[str, Iterator]:
        """{split: its pairs}, each read lazily, once, when iterated (for `save_prepared_segmentation`)."""
        return {name: self.read(name) for name in SPLIT_NAMES}

    def all_sizes(self) -> list[tuple[int, int]]:
        return [size for name in SPLIT_NAMES for size in self.sizes[name]]

    def in_memory(self) -> SegSplits:
        """Every split read into lists: for small data and tests."""
        def collect(name):
            pairs = list(self.read(name))
            return SegSplit([image for image, _ in pairs], [mask for _, mask in pairs])
        return SegSplits(*(collect(name) for name in SPLIT_NAMES), test_split_note=self.test_split_note)


# --- The demo scenes -------------------------------------------------------------------------


def demo_source(n_train: int, n_val: int, n_test: int, image_size: int, seed: int) -> SegSource:
    """Generated scenes, each hiding one real MNIST digit in look-alike clutter, drawn one at a time.

    Each split draws its digits (and the digit fragments in its clutter) from its own MNIST
    images, disjoint from the other splits'. Same arguments, same bytes.
    """
    digits = _mnist_digits()
    pools = dict(zip(SPLIT_NAMES, demo_digit_indices(n_train, n_val, n_test, seed, available=len(digits))))

    def read(name):
        rng = np.random.default_rng([seed, SPLIT_NAMES.index(name) + 1])
        fragments = digits[pools[name]]                                     # N x 28 x 28
        for digit in fragments:
            yield demo_scenes.render_scene(rng, digit, fragments, image_size)   # S x S x 3, S x S

    sizes = {name: [(image_size, image_size)] * len(pool) for name, pool in pools.items()}
    return SegSource(sizes, read, test_split_note="demo scenes (digits disjoint from train and val)")


def demo_segmentation(n_train: int, n_val: int, n_test: int, image_size: int, seed: int) -> SegSplits:
    """`demo_source`'s scenes, in memory."""
    return demo_source(n_train, n_val, n_test, image_size, seed).in_memory()


def demo_digit_indices(n_train: int, n_val: int, n_test: int, seed: int,
                       available: int) -> list[np.ndarray]:
    """Indices into the embedded MNIST digits for train, val and test: seeded, disjoint."""
    n_scenes = n_train + n_val + n_test
    if n_scenes > available:
        raise FcnlabError(
            f"{n_scenes} demo scenes need {n_scenes} MNIST digits (each scene its own) but only "
            f"{available} are embedded; lower seg.demo.n_train/n_val/n_test")
    order = np.random.default_rng(seed).permutation(available)
    return np.split(order[:n_scenes], [n_train, n_train + n_val])


@functools.cache
def _mnist_digits() -> np.ndarray:
    """N x 28 x 28 uint8 embedded MNIST digits, read once per process (parsing takes seconds)."""
    digits, _ = embedded_mnist()
    digits.flags.writeable = False
    return digits


# --- Source 2: the seed's .npy files --------------------------------------------------------


def npy_source(folder, image_size: int, val_fraction: float, seed: int, resize: str = "square") -> SegSource:
    """The seed's `seg_*.npy` files: train/val by a seeded `val_fraction`, test from the test files.

    Images may be uint8 (or any integer type) in 0..255, or float: a float file whose
    largest value is <= 1 is read as 0..1, otherwise as 0..255 (the choice is per file).
    Labels are one-hot N x H x W x 2 (0/1 in any numeric type); channel 1 is the foreground.
    Without seg_test_labels.npy the validation split doubles as the test split.
    The files are memory-mapped and checked a chunk at a time; the pairs are converted one at a time.
    """
    folder = existing_folder(folder, f"an npy source needs {TRAIN_IMAGES} and {TRAIN_LABELS} in it")
    train_pair = _open_npy_pair(folder / TRAIN_IMAGES, folder / TRAIN_LABELS)
    train, val, _ = split_indices(len(train_pair[0]), seed, folder / TRAIN_IMAGES, val_fraction)
    picks = {"train": (train_pair, train), "val": (train_pair, val)}
    if (folder / TEST_LABELS).exists():
        if not (folder / TEST_IMAGES).exists():
            raise FcnlabError(f"{folder / TEST_IMAGES}: file not found, but {TEST_LABELS} is there; "
                              f"add the test images or remove {TEST_LABELS}")
        test_pair = _open_npy_pair(folder / TEST_IMAGES, folder / TEST_LABELS)
        picks["test"], note = (test_pair, np.arange(len(test_pair[0]))), TEST_LABELS
    else:
        picks["test"], note = (train_pair, val), f"validation split (no {TEST_LABELS} given)"

    def read(name):
        (images, masks, scale), indices = picks[name]
        for i in indices:
            image = np.rint(images[i] * 255.0 if scale else images[i]).astype(np.uint8)       # H' x W' x 3
            mask = (np.asarray(masks[i])[..., 1] == 1).astype(np.uint8)                        # H' x W'
            yield to_training_scale(image, resize, image_size), mask_to_training_scale(mask, resize, image_size)

    sizes = {name: [training_scale_size(*pair[0].shape[1:3], resize, image_size)] * len(indices)
             for name, (pair, indices) in picks.items()}
    return SegSource(sizes, read, test_split_note=note)


def load_npy_source(folder, image_size: int, val_fraction: float, seed: int, resize: str = "square") -> SegSplits:
    """`npy_source`'s splits, in memory."""
    return npy_source(folder, image_size, val_fraction, seed, resize).in_memory()


def _open_npy_pair(images_path: Path, labels_path: Path):
    """(N x H' x W' x 3 images, N x H' x W' x 2 labels, whether the images are 0..1 floats to scale),
    both memory-mapped and checked, from one imgs/labels pair of files."""
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FcnlabError(f"{path}: file not found; an npy source folder needs "
                              f"{TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES} (+ optional {TEST_LABELS}): "
                              "add it, or set seg.path to the folder that has them")
    images = _open_source_npy(images_path)
    scale = _check_npy_images(images, images_path)
    labels = _open_source_npy(labels_path)
    _check_npy_labels(labels, labels_path)
    if len(images) != len(labels):
        raise FcnlabError(f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                          f"{images_path.name}; both files must hold the same number of examples: "
                          "save them again from the same list")
    if images.shape[1:3] != labels.shape[1:3]:
        raise FcnlabError(f"{labels_path}: labels are {labels.shape[1]} x {labels.shape[2]} pixels but the "
                          f"images in {images_path.name} are {images.shape[1]} x {images.shape[2]}; "
                          "each label must match its image's height and width")
    return images, labels, scale


def _open_source_npy(path: Path) -> np.ndarray:
    """The file memory-mapped (nothing read yet); every failure names the file and the fix."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise FcnlabError(f"{path}: holds Python objects that need pickle to load, which fcnlab refuses "
                              "for safety; save it again as a plain numeric array") from None
        raise FcnlabError(f"{path}: truncated, or not a readable .npy array ({err}); "
                          "save the real array again with np.save") from None
    except (OSError, EOFError, MemoryError, OverflowError) as err:
        raise FcnlabError(f"{path}: truncated or corrupt .npy file ({type(err).__name__}: {err}); "
                          "save the real array again with np.save") from None


def _chunks(array: np.ndarray):
    """`array` in slices along its first axis of about CHECK_CHUNK_BYTES each, read one at a time."""
    step = max(1, CHECK_CHUNK_BYTES // max(1, array[:1].nbytes))
    for start in range(0, len(array), step):
        yield np.asarray(array[start:start + step])


def _check_npy_images(images: np.ndarray, path: Path) -> bool:
    """Refuse anything but N x H x W x 3 numbers in 0..255 (or 0..1); True if they are 0..1 floats."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.size == 0:
        raise FcnlabError(f"{path}: shape {images.shape}; images must be N x H x W x 3 (RGB, none of N, H, "
                          "W zero); stack grayscale images three times along the last axis")
    _check_numeric(images, path, "images", allow_bool=False)
    low, high = np.inf, -np.inf
    for chunk in _chunks(images):
        if not np.all(np.isfinite(chunk)):
            raise FcnlabError(f"{path}: images contain NaN or Inf pixels; replace them "
                              "(e.g. np.nan_to_num) and save again")
        low, high = min(low, chunk.min()), max(high, chunk.max())
    if low < 0 or high > 255:
        raise FcnlabError(f"{path}: pixel values span {low}..{high}; images must be 0..255 "
                          "(or floats in 0..1); rescale them and save again")
    return bool(np.issubdtype(images.dtype, np.floating) and high <= 1)


def _check_npy_labels(labels: np.ndarray, path: Path) -> None:
    """Refuse anything but one-hot N x H x W x 2 labels (channel 1 = foreground)."""
    if labels.ndim != 4 or labels.shape[-1] != 2:
        raise FcnlabError(f"{path}: shape {labels.shape}; labels must be one-hot N x H x W x 2 "
                          "(channel 0 = background, channel 1 = foreground); build them as "
                          "np.stack([1 - mask, mask], axis=-1)")
    _check_numeric(labels, path, "labels", allow_bool=True)
    for chunk in _chunks(labels):
        if not (np.all((chunk == 0) | (chunk == 1)) and np.all(chunk.sum(axis=-1) == 1)):
            raise FcnlabError(f"{path}: labels are not one-hot (each pixel needs exactly one 1 across its 2 "
                              "channels, the rest 0); build them as np.stack([1 - mask, mask], axis=-1)")


def _check_numeric(array: np.ndarray, path: Path, what: str, allow_bool: bool) -> None:
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if not (numeric or (allow_bool and array.dtype == bool)):
        raise FcnlabError(f"{path}: dtype {array.dtype}; {what} must be numbers (uint8 or float); "
                          "save them again as such")


# --- Source 3: a folder of image and mask files ---------------------------------------------


def folder_source(folder, image_size: int, foreground_value: int, val_fraction: float,
                  test_fraction: float, seed: int, resize: str = "square") -> SegSource:
    """`folder/images/*` and `folder/masks/*`, paired by file stem, split train/val/test by seed,
    read one pair of files at a time.

    Images: any mode Pillow reads with 8-bit channels (grayscale, RGB, RGBA, palette, ...),
    converted to RGB (alpha dropped), any size, each resized to S x S. Images smaller than
    S (even smaller than 32 px) are accepted and upscaled like any other: the network only
    ever sees S x S, so only the sharpness of such an image suffers, not the run.

    Masks must be lossless (PNG, TIFF, BMP; not JPEG) and the same size as their image.
    They are read as grayscale (palette masks by palette index, as class-index PNGs store
    them). If their values are all in {0, 255} they become {0, 1}; values in {0, 1} stay;
    anything else is an error. Then foreground = (mask == foreground_value): 1 for the usual
    masks, 0 for masks that mark the foreground black (e.g. the ISBI 2012 membranes).
    """
    folder = existing_folder(folder, "a folder source needs images/ and masks/ inside it")
    image_names, mask_names = _paired_file_names(folder)       # the i-th pair; file names only, no Paths
    indices = dict(zip(SPLIT_NAMES, split_indices(len(image_names), seed, folder, val_fraction, test_fraction)))

    def read(name):
        for i in indices[name]:
            yield read_image_and_mask(folder / "images" / image_names[i], folder / "masks" / mask_names[i],
                                      resize, image_size, foreground_value)

    shared: dict[tuple[int, int], tuple[int, int]] = {}       # one tuple per distinct size
    sizes = {name: [shared.setdefault(size, size) for size in (
                 _size_at_training_scale(folder / "images" / image_names[i], resize, image_size) for i in split)]
             for name, split in indices.items()}
    return SegSource(sizes, read, test_split_note=f"seeded split of {folder.name}/ (test_fraction {test_fraction})")


def load_folder_source(folder, image_size: int, foreground_value: int, val_fraction: float,
                       test_fraction: float, seed: int, resize: str = "square") -> SegSplits:
    """`folder_source`'s splits, in memory."""
    return folder_source(folder, image_size, foreground_value, val_fraction, test_fraction, seed,
                         resize).in_memory()


def _size_at_training_scale(path: Path, resize: str, image_size: int) -> tuple[int, int]:
    """(H, W) an image file will have at the training scale, from its header alone (no decoding);
    an unreadable file counts as S x S (the reader reports it)."""
    if resize == "square":
        return image_size, image_size
    try:
        width, height = image_size_as_shown(path)
    except FcnlabError:
        return image_size, image_size
    return training_scale_size(height, width, resize, image_size)


def image_files_by_stem(directory: Path) -> dict[str, Path]:
    """{stem: path} of the files in `directory` that Pillow can read by extension, sorted by stem.

    Hidden files and other files (notes, .DS_Store, Thumbs.db) are ignored.
    """
    return {os.path.splitext(name)[0]: directory / name for name in _image_file_names(directory)}


def _image_file_names(directory: Path) -> list[str]:
    """`image_files_by_stem`'s file names, in its order: plain strings, a few dozen bytes each,
    so a folder of a million images costs tens of MB, not the GB of as many Path objects."""
    if not directory.is_dir():
        raise FcnlabError(f"{directory}: folder not found; a folder source needs images/ and masks/ "
                          "subfolders whose files pair up by name: add it, or fix seg.path")
    extensions = Image.registered_extensions()
    with os.scandir(directory) as entries:
        names = sorted(entry.name for entry in entries
                       if entry.is_file() and not entry.name.startswith(".")
                       and os.path.splitext(entry.name)[1].lower() in extensions)
    if not names:
        raise FcnlabError(f"{directory}: no image files in it (PNG, JPEG, TIFF, ...); put the images there")
    first_with_stem: dict[str, str] = {}
    for name in names:
        stem = os.path.splitext(name)[0]
        if stem in first_with_stem:
            raise FcnlabError(f"{directory / name}: two files share the name {stem!r} ({first_with_stem[stem]} "
                              f"and {name}); keep one per name so images and masks pair up")
        first_with_stem[stem] = name
    del first_with_stem
    names.sort(key=lambda name: os.path.splitext(name)[0])
    return names


def _paired_file_names(folder: Path) -> tuple[list[str], list[str]]:
    """(image file names, mask file names), the i-th of each with the same stem, sorted by stem;
    an unpaired file on either side is an error."""
    image_names, mask_names = _image_file_names(folder / "images"), _image_file_names(folder / "masks")
    image_stems = [os.path.splitext(name)[0] for name in image_names]
    if image_stems != [os.path.splitext(name)[0] for name in mask_names]:
        images = {os.path.splitext(name)[0]: name for name in image_names}
        masks = {os.path.splitext(name)[0]: name for name in mask_names}
        _fail_if_unpaired(folder / "images", images, masks, partner_folder="masks")
        _fail_if_unpaired(folder / "masks", masks, images, partner_folder="images")
    return image_names, mask_names


def _fail_if_unpaired(directory: Path, names: dict[str, str], partners: dict[str, str],
                      partner_folder: str) -> None:
    unpaired = [name for stem, name in names.items() if stem not in partners]
    if unpaired:
        shown = ", ".join(unpaired[:NAMES_SHOWN])
        if len(unpaired) > NAMES_SHOWN:
            shown += f" and {len(unpaired) - NAMES_SHOWN} more"
        raise FcnlabError(f"{directory}: {len(unpaired)} file(s) have no file of the same name in "
                          f"{partner_folder}/: {shown}; add their {partner_folder} or remove them")


def read_image_and_mask(image_path: Path, mask_path: Path, resize: str, image_size: int,
                        foreground_value: int):
    """(H x W x 3 uint8 image, H x W uint8 mask in {0, 1}) at the training scale, for one pair of files."""
    image = open_image(image_path)
    mask = open_image(mask_path)
    if image.size != mask.size:
        raise FcnlabError(f"{mask_path}: mask is {mask.size[0]} x {mask.size[1]} pixels but its image "
                          f"{image_path.name} is {image.size[0]} x {image.size[1]}; "
                          "save each mask at its image's size")
    rgb = to_training_scale(as_rgb(image, image_path), resize, image_size)
    binary = _as_binary_mask(mask, mask_path)
    return rgb, mask_to_training_scale((binary == foreground_value).astype(np.uint8), resize, image_size)


def _as_binary_mask(mask: Image.Image, path: Path) -> np.ndarray:
    """H x W uint8 {0, 1}: grayscale (or palette-index) values {0, 255} or {0, 1} as 0/1."""
    raw = mask.mode == "P" or mask.mode.startswith(("I", "F"))
    values = np.asarray(mask) if raw else np.asarray(mask.convert("L"))   # H x W
    present = np.unique(values)
    if set(present.tolist()) <= {0, 1}:
        return values.astype(np.uint8)
    if set(present.tolist()) <= {0, 255}:
        return (values == 255).astype(np.uint8)
    odd = ", ".join(str(v) for v in present[(present != 0) & (present != 1) & (present != 255)][:NAMES_SHOWN])
    raise FcnlabError(f"{path}: mask has values other than 0/1 or 0/255 (e.g. {odd}); save masks "
                      "losslessly (PNG, not JPEG) with only 0 and 255 (or 0 and 1)")


# --- Shared by the sources ------------------------------------------------------------------


def split_indices(n: int, seed: int, origin, val_fraction: float, test_fraction: float = 0.0):
    """Seeded (train, val, test) index arrays, each sorted; test is empty if test_fraction is 0.

    val gets round(val_fraction * n) examples, test round(test_fraction * n), train the rest;
    each requested split must get at least one.
    """
    n_val, n_test = round(val_fraction * n), round(test_fraction * n)
    n_train = n - n_val - n_test
    if n_train < 1 or n_val < 1 or (test_fraction > 0 and n_test < 1):
        test_text = f", test_fraction {test_fraction} -> test {n_test}" if test_fraction else ""
        raise FcnlabError(
            f"{origin}: {n} labelled image(s) are too few to split (val_fraction {val_fraction} -> "
            f"val {n_val}{test_text}, train {n_train}); every split needs at least one image: "
            "add images or change the fractions in params.yaml (seg:)")
    order = np.random.default_rng(seed).permutation(n)
    test, val, train = np.split(order, [n_test, n_test + n_val])
    return np.sort(train), np.sort(val), np.sort(test)


def geometry_record(resize: str, image_size: int) -> dict:
    """How the prepared images were scaled, as train-fcn records it beside the model."""
    return {"resize": resize, "image_size": image_size}


def segmentation_summary(splits: SegSplits) -> dict:
    """JSON-able counts, image sizes and foreground fractions per split, as prepare-seg's summary
    gives them (it gathers them while writing, `fcnlab.seg.shards`)."""
    summary = {"test_split_note": splits.test_split_note}
    for name, split in splits.splits().items():
        stats = SplitStats()
        for image, mask in split:
            stats.add(image, mask)
        summary[name] = stats.summary()
    return summary


def existing_folder(folder, needs: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FcnlabError(f"{folder}: folder not found; {needs}; fix seg.path in params.yaml")
    return folder
