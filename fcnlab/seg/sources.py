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

Whatever the source, the result is a `SegSplits`: per split, uint8 RGB images H x W x 3 and
uint8 masks H x W with 1 = foreground, 0 = background, at the training scale of the resize
policy (`fcnlab.seg.geometry`): S x S for "square" (the seed's), longer side S for
"keep_aspect", the stored size for "none". Demo scenes are drawn at S x S.
Splits are seeded: the same files, fractions and seed give the same split.

Memory guard: every source first counts the pixels it would hold (images x S x S, or the
stored size where that is larger) and refuses more than `max_megapixels` million, before
reading or generating anything; see `TRAINING_BYTES_PER_PIXEL` for what a pixel costs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from PIL import Image

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import as_rgb, load_npy, open_image
from fcnlab.core.mnist import embedded_mnist
from fcnlab.seg import demo_scenes
from fcnlab.seg.arrays import SegSplit
from fcnlab.seg.geometry import mask_to_training_scale, to_training_scale, training_scale_size

SOURCES = ("demo", "npy", "folder")
TRAIN_IMAGES, TRAIN_LABELS = "seg_train_imgs.npy", "seg_train_labels.npy"
TEST_IMAGES, TEST_LABELS = "seg_test_imgs.npy", "seg_test_labels.npy"
NAMES_SHOWN = 5  # how many offending file names an error lists

# What one image pixel costs in memory while train-fcn runs with a frozen encoder (the default,
# and the hungriest case): the uint8 image and mask (3 + 1 bytes), a float32 copy of the image
# for VGG16 (12), the cached pool3/pool4/pool5 features (256/8**2 + 512/16**2 + 512/32**2 =
# 6.5 float32 values: 26 bytes) and the float32 one-hot targets (8): about 50 bytes.
TRAINING_BYTES_PER_PIXEL = 50


@dataclass
class SegSplits:
    train: SegSplit
    val: SegSplit
    test: SegSplit
    test_split_note: str      # where the test split came from, for the summary

    def splits(self) -> dict[str, SegSplit]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _splits(images, masks, train, val, test, note: str) -> SegSplits:
    """SegSplits from one list (or array) of images and masks and the index arrays of each split."""
    def pick(indices):
        return SegSplit([images[i] for i in indices], [masks[i] for i in indices])
    return SegSplits(pick(train), pick(val), pick(test), test_split_note=note)


# --- The demo scenes -------------------------------------------------------------------------


def demo_segmentation(n_train: int, n_val: int, n_test: int, image_size: int, seed: int,
                      max_megapixels: float | None = None) -> SegSplits:
    """Generated scenes, each hiding one real MNIST digit in look-alike clutter.

    Each split draws its digits (and the digit fragments in its clutter) from its own MNIST
    images, disjoint from the other splits'. Same arguments, same bytes.
    """
    n_scenes = n_train + n_val + n_test
    check_pixel_budget(n_scenes * image_size ** 2, f"{n_scenes} scenes of {image_size} x {image_size} px",
                       max_megapixels, origin="seg.demo")
    digits = _mnist_digits()
    pools = demo_digit_indices(n_train, n_val, n_test, seed, available=len(digits))
    splits = []
    for split_number, pool in enumerate(pools, start=1):
        rng = np.random.default_rng([seed, split_number])
        images, masks = demo_scenes.render_scenes(rng, digits[pool], image_size)  # N x S x S (x 3)
        splits.append(SegSplit(list(images), list(masks)))
    return SegSplits(*splits, test_split_note="demo scenes (digits disjoint from train and val)")


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


def load_npy_source(folder, image_size: int, val_fraction: float, seed: int,
                    max_megapixels: float | None = None, resize: str = "square") -> SegSplits:
    """The seed's `seg_*.npy` files: train/val by a seeded `val_fraction`, test from the test files.

    Images may be uint8 (or any integer type) in 0..255, or float: a float file whose
    largest value is <= 1 is read as 0..1, otherwise as 0..255 (the choice is per file).
    Labels are one-hot N x H x W x 2 (0/1 in any numeric type); channel 1 is the foreground.
    Without seg_test_labels.npy the validation split doubles as the test split.
    """
    folder = existing_folder(folder, f"an npy source needs {TRAIN_IMAGES} and {TRAIN_LABELS} in it")
    _check_npy_pixel_budget(folder, image_size, max_megapixels)

    images, masks = _load_npy_pair(folder / TRAIN_IMAGES, folder / TRAIN_LABELS, resize, image_size)
    train, val, _ = split_indices(len(images), seed, folder / TRAIN_IMAGES, val_fraction)

    if (folder / TEST_LABELS).exists():
        if not (folder / TEST_IMAGES).exists():
            raise FcnlabError(f"{folder / TEST_IMAGES}: file not found, but {TEST_LABELS} is there; "
                              f"add the test images or remove {TEST_LABELS}")
        test_images, test_masks = _load_npy_pair(folder / TEST_IMAGES, folder / TEST_LABELS, resize, image_size)
        splits = _splits(images, masks, train, val, [], note=TEST_LABELS)
        splits.test = SegSplit(list(test_images), list(test_masks))
        return splits
    return _splits(images, masks, train, val, val, note=f"validation split (no {TEST_LABELS} given)")


def _load_npy_pair(images_path: Path, labels_path: Path, resize: str, image_size: int):
    """(N x H' x W' x 3 uint8 images, N x H' x W' uint8 masks) at the training scale, from one
    imgs/labels pair of files."""
    for path in (images_path, labels_path):
        if not path.is_file():
            raise FcnlabError(f"{path}: file not found; an npy source folder needs "
                              f"{TRAIN_IMAGES}, {TRAIN_LABELS}, {TEST_IMAGES} (+ optional {TEST_LABELS}): "
                              "add it, or set seg.path to the folder that has them")
    images = _npy_images_as_uint8(_load_source_npy(images_path), images_path)    # N x H x W x 3
    masks = _npy_one_hot_as_mask(_load_source_npy(labels_path), labels_path)     # N x H x W
    if len(images) != len(masks):
        raise FcnlabError(f"{labels_path}: {len(masks)} labels for {len(images)} images in "
                          f"{images_path.name}; both files must hold the same number of examples: "
                          "save them again from the same list")
    if images.shape[1:3] != masks.shape[1:3]:
        raise FcnlabError(f"{labels_path}: labels are {masks.shape[1]} x {masks.shape[2]} pixels but the "
                          f"images in {images_path.name} are {images.shape[1]} x {images.shape[2]}; "
                          "each label must match its image's height and width")
    return (np.stack([to_training_scale(image, resize, image_size) for image in images]),
            np.stack([mask_to_training_scale(mask, resize, image_size) for mask in masks]))


def _load_source_npy(path: Path) -> np.ndarray:
    try:
        return load_npy(path)
    except (MemoryError, OverflowError):  # a header claiming a shape no memory holds
        raise FcnlabError(f"{path}: its header declares an array too large to load into memory; "
                          "save the real array again with np.save") from None


def _check_npy_pixel_budget(folder: Path, image_size: int, max_megapixels) -> None:
    """Refuse npy files that would hold too many pixels, from their headers alone (no data read).

    An image counts at its stored size while it is loaded, at S x S once resized; the larger
    counts. Missing or unreadable files, and headers no array could match, are left for the
    loader to report.
    """
    files = [TRAIN_IMAGES] + ([TEST_IMAGES] if (folder / TEST_LABELS).exists() else [])
    n_images, pixels, largest = 0, 0, (image_size, image_size)
    for name in files:
        shape = npy_header_shape(folder / name)
        if shape is None or len(shape) < 3 or max(shape) > 2 ** 62:   # (no array is that big: left
            continue                                                     # for np.load to refuse)
        n, height, width = shape[:3]
        n_images += n
        pixels += n * max(height * width, image_size ** 2)
        largest = max(largest, (height, width), key=lambda hw: hw[0] * hw[1])
    size = f"{largest[0]} x {largest[1]} px" + (" (their stored size)" if largest[0] * largest[1] > image_size ** 2
                                                else "")
    check_pixel_budget(pixels, f"{n_images} images of up to {size}", max_megapixels,
                       origin=f"{folder / ' + '.join(files)}")


def npy_header_shape(path: Path) -> tuple[int, ...] | None:
    """The shape a `.npy` file's header declares, read without loading (or unpickling) its data;
    None if the file is missing or its header unreadable."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, _ = read_header(file)
    except (OSError, ValueError, EOFError, SyntaxError):
        return None
    return tuple(int(side) for side in shape)


def _npy_images_as_uint8(images: np.ndarray, path: Path) -> np.ndarray:
    """N x H x W x 3 numeric -> uint8 0..255 (floats in 0..1 are scaled by 255)."""
    if images.ndim != 4 or images.shape[-1] != 3 or images.size == 0:
        raise FcnlabError(f"{path}: shape {images.shape}; images must be N x H x W x 3 (RGB, none of N, H, "
                          "W zero); stack grayscale images three times along the last axis")
    _check_numeric(images, path, "images", allow_bool=False)
    if not np.all(np.isfinite(images)):
        raise FcnlabError(f"{path}: images contain NaN or Inf pixels; replace them "
                          "(e.g. np.nan_to_num) and save again")
    low, high = images.min(), images.max()
    if low < 0 or high > 255:
        raise FcnlabError(f"{path}: pixel values span {low}..{high}; images must be 0..255 "
                          "(or floats in 0..1); rescale them and save again")
    if np.issubdtype(images.dtype, np.floating) and high <= 1:
        images = images * 255.0
    return np.rint(images).astype(np.uint8)


def _npy_one_hot_as_mask(labels: np.ndarray, path: Path) -> np.ndarray:
    """N x H x W x 2 one-hot -> N x H x W uint8, 1 where channel 1 (foreground) is set."""
    if labels.ndim != 4 or labels.shape[-1] != 2:
        raise FcnlabError(f"{path}: shape {labels.shape}; labels must be one-hot N x H x W x 2 "
                          "(channel 0 = background, channel 1 = foreground); build them as "
                          "np.stack([1 - mask, mask], axis=-1)")
    _check_numeric(labels, path, "labels", allow_bool=True)
    if not (np.all((labels == 0) | (labels == 1)) and np.all(labels.sum(axis=-1) == 1)):
        raise FcnlabError(f"{path}: labels are not one-hot (each pixel needs exactly one 1 across its 2 "
                          "channels, the rest 0); build them as np.stack([1 - mask, mask], axis=-1)")
    return (labels[..., 1] == 1).astype(np.uint8)


def _check_numeric(array: np.ndarray, path: Path, what: str, allow_bool: bool) -> None:
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if not (numeric or (allow_bool and array.dtype == bool)):
        raise FcnlabError(f"{path}: dtype {array.dtype}; {what} must be numbers (uint8 or float); "
                          "save them again as such")


# --- Source 3: a folder of image and mask files ---------------------------------------------


def load_folder_source(folder, image_size: int, foreground_value: int, val_fraction: float,
                       test_fraction: float, seed: int, max_megapixels: float | None = None,
                       resize: str = "square") -> SegSplits:
    """`folder/images/*` and `folder/masks/*`, paired by file stem, split train/val/test by seed.

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

    image_files = image_files_by_stem(folder / "images")
    mask_files = image_files_by_stem(folder / "masks")
    stems = _paired_stems(image_files, mask_files, folder)
    if resize == "square":
        pixels, sizes = len(stems) * image_size ** 2, f"{image_size} x {image_size} px"
    else:
        pixels = sum(_pixels_at_training_scale(image_files[stem], resize, image_size) for stem in stems)
        sizes = f"their {'own size' if resize == 'none' else f'longer side {image_size} px'}"
    check_pixel_budget(pixels, f"{len(stems)} images at {sizes}", max_megapixels, origin=folder)
    pairs = [read_image_and_mask(image_files[stem], mask_files[stem], resize, image_size, foreground_value)
             for stem in stems]
    images = [image for image, _ in pairs]              # H x W x 3 each
    masks = [mask for _, mask in pairs]                 # H x W each

    train, val, test = split_indices(len(stems), seed, folder, val_fraction, test_fraction)
    return _splits(images, masks, train, val, test,
                   note=f"seeded split of {folder.name}/ (test_fraction {test_fraction})")


def _pixels_at_training_scale(path: Path, resize: str, image_size: int) -> int:
    """The pixels an image file will have at the training scale, from its header alone."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, SyntaxError, ValueError):
        return image_size ** 2          # unreadable: left for the reader to report
    new_height, new_width = training_scale_size(height, width, resize, image_size)
    return max(height * width, new_height * new_width)


def image_files_by_stem(directory: Path) -> dict[str, Path]:
    """{stem: path} of the files in `directory` that Pillow can read by extension, sorted by stem.

    Hidden files and other files (notes, .DS_Store, Thumbs.db) are ignored.
    """
    if not directory.is_dir():
        raise FcnlabError(f"{directory}: folder not found; a folder source needs images/ and masks/ "
                          "subfolders whose files pair up by name: add it, or fix seg.path")
    extensions = Image.registered_extensions()
    files = sorted(path for path in directory.iterdir()
                   if path.is_file() and not path.name.startswith(".") and path.suffix.lower() in extensions)
    if not files:
        raise FcnlabError(f"{directory}: no image files in it (PNG, JPEG, TIFF, ...); put the images there")
    by_stem: dict[str, Path] = {}
    for path in files:
        if path.stem in by_stem:
            raise FcnlabError(f"{path}: two files share the name {path.stem!r} ({by_stem[path.stem].name} "
                              f"and {path.name}); keep one per name so images and masks pair up")
        by_stem[path.stem] = path
    return dict(sorted(by_stem.items()))


def _paired_stems(image_files: dict[str, Path], mask_files: dict[str, Path], folder: Path) -> list[str]:
    """The stems, each with both an image and a mask; an unpaired file on either side is an error."""
    _fail_if_unpaired(folder / "images", image_files, mask_files, partner_folder="masks")
    _fail_if_unpaired(folder / "masks", mask_files, image_files, partner_folder="images")
    return list(image_files)


def _fail_if_unpaired(directory: Path, files: dict[str, Path], partners: dict[str, Path],
                      partner_folder: str) -> None:
    unpaired = [path.name for stem, path in files.items() if stem not in partners]
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
    """JSON-able counts, image sizes and foreground fractions per split, for the prepare-seg summary."""
    summary = {"test_split_note": splits.test_split_note}
    for name, split in splits.splits().items():
        heights = [image.shape[0] for image in split.images]
        widths = [image.shape[1] for image in split.images]
        summary[name] = {"count": len(split), "foreground_fraction": round(split.foreground_fraction(), 6),
                         "height_px": [min(heights), max(heights)], "width_px": [min(widths), max(widths)]}
    return summary


def check_pixel_budget(pixels: int, description: str, max_megapixels: float | None, origin) -> None:
    """Refuse to hold more than `max_megapixels` million pixels (None: no limit).

    `description` says what the pixels are ("224 scenes of 128 x 128 px"), `origin` where
    they come from (a folder, or the params key); both go into the message.
    """
    if max_megapixels is None:
        return
    if pixels > max_megapixels * 1e6:
        raise FcnlabError(
            f"{origin}: {description} would hold {pixels:.3g} pixels (about "
            f"{pixels * TRAINING_BYTES_PER_PIXEL / 1e9:.3g} GB of memory in train-fcn), more than "
            f"seg.max_megapixels = {max_megapixels:g} million; raise seg.max_megapixels in params.yaml "
            "if this machine has the memory, or lower seg.image_size or use fewer images")


def existing_folder(folder, needs: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FcnlabError(f"{folder}: folder not found; {needs}; fix seg.path in params.yaml")
    return folder
