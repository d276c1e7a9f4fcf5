"""Segmentation data: the demo scenes, the seed's .npy files and image folders.

Every test writes its own small files under tmp_path; none needs the network or shared data.
Each source gives a `SegSplits` of per-split `SegSplit`s (lists of images and masks, which may
differ in size under the keep_aspect and none resize policies).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT

from fcnlab.core.errors import FcnlabError
from fcnlab.seg.arrays import load_geometry
from fcnlab.seg.shards import load_prepared_split
from fcnlab.seg.sources import (
    SegSplits,
    demo_digit_indices,
    demo_segmentation,
    load_folder_source,
    load_npy_source,
    read_image_and_mask,
    segmentation_summary,
)

SPLITS = ("train", "val", "test")


def all_masks(splits: SegSplits) -> np.ndarray:
    """N x H x W: every split's masks, train then val then test (all one size)."""
    return np.stack([mask for split in splits.splits().values() for mask in split.masks])


def all_images(splits: SegSplits) -> np.ndarray:
    """N x H x W x 3: every split's images, train then val then test (all one size)."""
    return np.stack([image for split in splits.splits().values() for image in split.images])


def images_of(splits: SegSplits, *names: str) -> np.ndarray:
    return np.stack([image for name in names for image in getattr(splits, name).images])


def masks_of(splits: SegSplits, *names: str) -> np.ndarray:
    return np.stack([mask for name in names for mask in getattr(splits, name).masks])


# --- Per-pixel baselines the demo must defeat -------------------------------------------------


def best_threshold_iou(values: np.ndarray, masks: np.ndarray) -> float:
    """Best foreground IoU of `values >= t` or `values < t` over every threshold t (values 0..255)."""
    values, foreground = values.ravel().astype(np.int64), masks.ravel().astype(bool)
    fg_hist = np.bincount(values[foreground], minlength=256)
    bg_hist = np.bincount(values[~foreground], minlength=256)
    n_foreground = foreground.sum()
    above = fg_hist[::-1].cumsum()[::-1] / (n_foreground + bg_hist[::-1].cumsum()[::-1])
    below = fg_hist.cumsum() / (n_foreground + bg_hist.cumsum())
    return float(max(above.max(), below.max()))


def colour_lookup_iou(fit_images, fit_masks, images, masks, levels: int = 8) -> float:
    """Foreground IoU on (images, masks) of the best colour-bin classifier fitted on the fit set.

    Colours are binned levels^3 ways; bins are ranked by their foreground share in the fit
    set and every cut-off of that ranking is tried on the evaluation set (best reported).
    """
    def bins(rgb):
        q = (rgb.astype(np.int64) * levels) // 256
        return (q[..., 0] * levels * levels + q[..., 1] * levels + q[..., 2]).ravel()

    fit_bins, fit_fg = bins(fit_images), fit_masks.ravel().astype(bool)
    fg_count = np.bincount(fit_bins[fit_fg], minlength=levels ** 3)
    total = np.bincount(fit_bins, minlength=levels ** 3)
    share = fg_count / np.maximum(total, 1)
    eval_share, eval_fg = share[bins(images)], masks.ravel().astype(bool)
    best = 0.0
    for cut in np.unique(share):
        predicted = eval_share >= cut
        best = max(best, (predicted & eval_fg).sum() / (predicted | eval_fg).sum())
    return float(best)


# --- Demo source ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_demo():
    """params.yaml's demo: 160/32/32 scenes at 128 px."""
    return demo_segmentation(160, 32, 32, image_size=128, seed=0)


def test_demo_same_seed_gives_identical_arrays():
    first = demo_segmentation(6, 2, 2, image_size=64, seed=3)
    second = demo_segmentation(6, 2, 2, image_size=64, seed=3)
    for name, split in first.splits().items():
        again = second.splits()[name]
        assert len(split) == len(again), name
        for kind in ("images", "masks"):
            for a, b in zip(getattr(split, kind), getattr(again, kind)):
                assert a.tobytes() == b.tobytes(), f"{name} {kind}"


def test_demo_different_seeds_give_different_scenes():
    first = demo_segmentation(6, 2, 2, image_size=64, seed=0)
    second = demo_segmentation(6, 2, 2, image_size=64, seed=1)
    assert not np.array_equal(images_of(first, "train"), images_of(second, "train"))
    assert not np.array_equal(masks_of(first, "train"), masks_of(second, "train"))


@pytest.mark.parametrize("image_size", [32, 96])
def test_demo_shapes_dtypes_and_binary_masks(image_size):
    splits = demo_segmentation(5, 3, 2, image_size=image_size, seed=0)
    for name, count in zip(SPLITS, (5, 3, 2)):
        images, masks = getattr(splits, name).stacked()
        assert images.shape == (count, image_size, image_size, 3) and images.dtype == np.uint8
        assert masks.shape == (count, image_size, image_size) and masks.dtype == np.uint8
        assert set(np.unique(masks).tolist()) == {0, 1}


def test_demo_foreground_is_a_tenth_to_a_quarter_of_the_pixels(default_demo):
    splits = default_demo
    masks = all_masks(splits)
    assert 0.10 <= masks.mean() <= 0.25
    assert masks.mean(axis=(1, 2)).min() > 0.01  # every scene shows its digit


def test_demo_foreground_is_not_found_by_any_intensity_threshold(default_demo):
    splits = default_demo
    images, masks = splits.train.stacked()
    grey = np.rint(images @ np.array([0.299, 0.587, 0.114]))
    channels = [images[..., c] for c in range(3)]
    # Measured 0.12-0.14 for seeds 0-2: no better than calling every pixel foreground.
    assert max(best_threshold_iou(v, masks) for v in [grey, *channels]) < 0.2


def test_demo_foreground_is_not_found_by_a_colour_lookup(default_demo):
    splits = default_demo
    # Fitted on train, scored on val + test: measured 0.12-0.15 for seeds 0-2 (again no better
    # than calling every pixel foreground; 0.26-0.29 when scored on its own training pixels).
    iou = colour_lookup_iou(images_of(splits, "train"), masks_of(splits, "train"),
                            images_of(splits, "val", "test"), masks_of(splits, "val", "test"))
    assert iou < 0.25


def test_demo_splits_draw_disjoint_mnist_digits():
    train, val, test = demo_digit_indices(160, 32, 32, seed=0, available=5000)
    assert (len(train), len(val), len(test)) == (160, 32, 32)
    assert len(set(train) | set(val) | set(test)) == 224


def test_demo_refuses_more_scenes_than_embedded_digits():
    with pytest.raises(FcnlabError, match="seg.demo"):
        demo_segmentation(4000, 1000, 1000, image_size=64, seed=0)


def prepare_seg_with(tmp_path, **seg):
    """Run prepare-seg's `main` in this process on a params.yaml whose seg: section is the
    project's with `seg` overriding it (`demo` merged key by key)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update({key: value for key, value in seg.items() if key != "demo"})
    params["seg"]["demo"].update(seg.get("demo", {}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    spec = importlib.util.spec_from_file_location("prepare_seg", ROOT / "stages" / "prepare_seg.py")
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    stage.main(argparse.Namespace(params=str(tmp_path / "params.yaml"), out=str(tmp_path / "out"),
                                  summary=str(tmp_path / "summary.json")))


@pytest.mark.parametrize("counts", [(0, 2, 2), (4, -1, 2), (4, 2, 1.5)])
def test_demo_refuses_split_sizes_below_one(tmp_path, counts):
    demo = dict(zip(("n_train", "n_val", "n_test"), counts))
    with pytest.raises(FcnlabError, match="seg.demo.n_"):
        prepare_seg_with(tmp_path, source="demo", image_size=64, demo=demo)


# --- npy source (the seed's files) ------------------------------------------------------------


def one_hot(masks: np.ndarray) -> np.ndarray:
    return np.stack([1 - masks, masks], axis=-1).astype(np.uint8)  # N x H x W x 2


def quarter_masks(n: int, height: int, width: int) -> np.ndarray:
    """N x H x W uint8 with the top-left quarter foreground."""
    masks = np.zeros((n, height, width), np.uint8)
    masks[:, : height // 2, : width // 2] = 1
    return masks


def write_npy_source(folder, n_train=10, n_test=4, height=40, width=48, test_labels=True):
    """The seed's four files with random uint8 images; returns the train images."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (n_train, height, width, 3), dtype=np.uint8)
    np.save(folder / "seg_train_imgs.npy", train_images)
    np.save(folder / "seg_train_labels.npy", one_hot(quarter_masks(n_train, height, width)))
    np.save(folder / "seg_test_imgs.npy", rng.integers(0, 256, (n_test, height, width, 3), dtype=np.uint8))
    if test_labels:
        np.save(folder / "seg_test_labels.npy", one_hot(quarter_masks(n_test, height, width)))
    return train_images


def test_npy_source_is_resized_and_split_by_val_fraction(tmp_path):
    write_npy_source(tmp_path, n_train=10, n_test=4)
    splits = load_npy_source(tmp_path, image_size=64, val_fraction=0.2, seed=0)
    train_images = images_of(splits, "train")
    assert train_images.shape == (8, 64, 64, 3) and train_images.dtype == np.uint8
    assert images_of(splits, "val").shape == (2, 64, 64, 3)
    assert images_of(splits, "test").shape == (4, 64, 64, 3)
    assert splits.test_split_note == "seg_test_labels.npy"
    masks = all_masks(splits)
    assert masks.shape == (14, 64, 64) and masks.dtype == np.uint8
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert abs(masks.mean() - 0.25) < 0.01  # nearest-neighbour resize keeps the quarter


def test_npy_images_already_at_image_size_are_kept_exactly(tmp_path):
    train_images = write_npy_source(tmp_path, height=32, width=32)
    splits = load_npy_source(tmp_path, image_size=32, val_fraction=0.2, seed=0)
    kept = splits.train.images + splits.val.images
    assert sorted(image.tobytes() for image in kept) == sorted(image.tobytes() for image in train_images)


@pytest.mark.parametrize("to_float", [lambda x: x.astype(np.float32) / 255.0,
                                      lambda x: x.astype(np.float64)],
                         ids=["float-0..1", "float-0..255"])
def test_npy_float_images_read_like_uint8(tmp_path, to_float):
    train_images = write_npy_source(tmp_path / "uint8")
    write_npy_source(tmp_path / "float")
    np.save(tmp_path / "float" / "seg_train_imgs.npy", to_float(train_images))
    as_uint8 = load_npy_source(tmp_path / "uint8", image_size=64, val_fraction=0.2, seed=0)
    as_float = load_npy_source(tmp_path / "float", image_size=64, val_fraction=0.2, seed=0)
    np.testing.assert_array_equal(images_of(as_float, "train"), images_of(as_uint8, "train"))


def test_npy_without_test_labels_tests_on_the_validation_split(tmp_path):
    write_npy_source(tmp_path, test_labels=False)
    splits = load_npy_source(tmp_path, image_size=64, val_fraction=0.3, seed=0)
    np.testing.assert_array_equal(images_of(splits, "test"), images_of(splits, "val"))
    np.testing.assert_array_equal(masks_of(splits, "test"), masks_of(splits, "val"))
    assert splits.test_split_note == "validation split (no seg_test_labels.npy given)"


def test_npy_split_depends_only_on_the_seed(tmp_path):
    write_npy_source(tmp_path)
    first, again, other = (load_npy_source(tmp_path, 32, 0.5, seed) for seed in (0, 0, 1))
    np.testing.assert_array_equal(images_of(first, "val"), images_of(again, "val"))
    assert not np.array_equal(images_of(first, "val"), images_of(other, "val"))


def _save(name, array):
    return lambda folder: np.save(folder / name, array)


def _delete(name):
    return lambda folder: (folder / name).unlink()


IMGS, LABELS = "seg_train_imgs.npy", "seg_train_labels.npy"
_LABELS_10 = one_hot(quarter_masks(10, 40, 48))
_NAN_IMAGES = np.full((10, 40, 48, 3), 0.5)
_NAN_IMAGES[3, 5, 5, 0] = np.nan
_INF_IMAGES = np.full((10, 40, 48, 3), 0.5)
_INF_IMAGES[0, 0, 0, 2] = np.inf
_BOTH_CHANNELS = _LABELS_10.copy()
_BOTH_CHANNELS[0, 0, 0] = (1, 1)

BAD_NPY = {
    "missing train images": (_delete(IMGS), IMGS),
    "missing train labels": (_delete(LABELS), LABELS),
    "test labels without test images": (_delete("seg_test_imgs.npy"), "seg_test_imgs.npy"),
    "count mismatch": (_save(LABELS, _LABELS_10[:9]), LABELS),
    "images of rank 3": (_save(IMGS, np.zeros((10, 40, 48), np.uint8)), IMGS),
    "images with 4 channels": (_save(IMGS, np.zeros((10, 40, 48, 4), np.uint8)), IMGS),
    "labels with 1 channel": (_save(LABELS, _LABELS_10[..., 1:]), LABELS),
    "height differs": (_save(LABELS, one_hot(quarter_masks(10, 32, 48))), LABELS),
    "labels valued 2": (_save(LABELS, _LABELS_10 * 2), LABELS),
    "labels in both channels": (_save(LABELS, _BOTH_CHANNELS), LABELS),
    "labels in no channel": (_save(LABELS, np.zeros_like(_LABELS_10)), LABELS),
    "bad test labels": (_save("seg_test_labels.npy", one_hot(quarter_masks(4, 40, 48)) * 3),
                        "seg_test_labels.npy"),
    "NaN pixel": (_save(IMGS, _NAN_IMAGES), IMGS),
    "Inf pixel": (_save(IMGS, _INF_IMAGES), IMGS),
    "pixels above 255": (_save(IMGS, np.full((10, 40, 48, 3), 300.0)), IMGS),
    "negative pixels": (_save(IMGS, np.full((10, 40, 48, 3), -1, np.int16)), IMGS),
    "text pixels": (_save(IMGS, np.full((10, 40, 48, 3), "a")), IMGS),
    "pickled objects": (lambda folder: np.save(folder / IMGS, np.array([{"x": 1}]), allow_pickle=True), IMGS),
    "zero-byte file": (lambda folder: (folder / LABELS).write_bytes(b""), LABELS),
}


@pytest.mark.parametrize("break_it, file_name", BAD_NPY.values(), ids=BAD_NPY.keys())
def test_npy_bad_input_names_the_file(tmp_path, break_it, file_name):
    write_npy_source(tmp_path)
    break_it(tmp_path)
    with pytest.raises(FcnlabError, match=file_name):
        load_npy_source(tmp_path, image_size=64, val_fraction=0.2, seed=0)


def test_npy_missing_folder_is_named(tmp_path):
    with pytest.raises(FcnlabError, match="no_such_folder"):
        load_npy_source(tmp_path / "no_such_folder", image_size=64, val_fraction=0.2, seed=0)


def test_npy_too_few_images_for_the_split_names_the_file(tmp_path):
    write_npy_source(tmp_path, n_train=2)
    with pytest.raises(FcnlabError, match="seg_train_imgs.npy.*too few"):
        load_npy_source(tmp_path, image_size=64, val_fraction=0.2, seed=0)


@pytest.mark.parametrize("val_fraction", [0, 1, 1.5, -0.1, True, "0.2"])
def test_npy_val_fraction_must_lie_strictly_between_0_and_1(tmp_path, val_fraction):
    write_npy_source(tmp_path / "npy")
    with pytest.raises(FcnlabError, match="seg.val_fraction"):
        prepare_seg_with(tmp_path, source="npy", path=str(tmp_path / "npy"), image_size=64,
                         val_fraction=val_fraction)


# --- folder source (images/ + masks/) ---------------------------------------------------------

# One pair per row: (image mode, image file type, image size W x H, mask encoding).
FOLDER_PAIRS = [
    ("L", "png", (40, 50), "0/255"),
    ("RGB", "png", (64, 64), "0/1"),
    ("RGB", "jpg", (72, 33), "0/255"),
    ("L", "jpg", (96, 80), "0/1"),
    ("RGBA", "png", (50, 40), "0/255"),
    ("P", "png", (46, 46), "0/1"),
    ("RGB", "bmp", (64, 48), "0/255"),
    ("L", "tif", (30, 70), "0/255"),
    ("RGB", "png", (128, 128), "0/1"),
    ("L", "png", (64, 32), "0/255"),
]


def pair_colour(i: int) -> tuple[int, int, int]:
    """A distinct colour per pair (grey for grey images), sortable by its red value."""
    red = 20 + 20 * i
    return (red, red, red) if FOLDER_PAIRS[i][0] == "L" else (red, 255 - red, 90)


def left_half_mask(size) -> np.ndarray:
    width, height = size
    mask = np.zeros((height, width), np.uint8)
    mask[:, : width // 2] = 1
    return mask  # H x W, 1 on the left half


def write_folder_source(root, pairs=FOLDER_PAIRS, mask_encoding=None):
    """images/<i>.<ext> in a flat colour and masks/<i>.png with the left half foreground."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, (mode, file_type, size, encoding) in enumerate(pairs):
        colour = pair_colour(i)
        image = Image.new("RGB", size, colour)
        if mode == "L":
            image = image.convert("L")
        elif mode == "RGBA":
            image.putalpha(128)
        elif mode == "P":
            image = image.convert("P", palette=Image.ADAPTIVE, colors=4)
        image.save(root / "images" / f"{i}.{file_type}")
        scale = 255 if (mask_encoding or encoding) == "0/255" else 1
        Image.fromarray(left_half_mask(size) * scale).save(root / "masks" / f"{i}.png")
    return root


def load_folder(root, image_size=64, foreground_value=1, val_fraction=0.2, test_fraction=0.2, seed=0):
    return load_folder_source(root, image_size, foreground_value, val_fraction, test_fraction, seed)


def test_folder_reads_grey_rgb_rgba_and_palette_png_jpeg_bmp_tiff_of_any_size(tmp_path):
    splits = load_folder(write_folder_source(tmp_path))
    images, masks = all_images(splits), all_masks(splits)
    assert images.shape == (10, 64, 64, 3) and images.dtype == np.uint8
    assert masks.shape == (10, 64, 64) and masks.dtype == np.uint8
    # Each image is one flat colour: resizing keeps it, grey becomes (g, g, g).
    assert np.all(images.min(axis=(1, 2)) >= images.max(axis=(1, 2)) - 4)  # JPEG wobbles a little
    found = sorted(images[:, 0, 0].tolist())
    expected = sorted(pair_colour(i) for i in range(len(FOLDER_PAIRS)))
    np.testing.assert_allclose(found, expected, atol=3)


def test_folder_masks_stay_binary_and_keep_their_left_half(tmp_path):
    masks = all_masks(load_folder(write_folder_source(tmp_path)))
    assert set(np.unique(masks).tolist()) == {0, 1}
    np.testing.assert_array_equal(masks.mean(axis=(1, 2)), 0.5)  # nearest neighbour, even widths


def test_folder_masks_coded_0_255_and_0_1_read_the_same(tmp_path):
    as_255 = load_folder(write_folder_source(tmp_path / "a", mask_encoding="0/255"))
    as_1 = load_folder(write_folder_source(tmp_path / "b", mask_encoding="0/1"))
    for name in SPLITS:
        np.testing.assert_array_equal(images_of(as_255, name), images_of(as_1, name), err_msg=name)
        np.testing.assert_array_equal(masks_of(as_255, name), masks_of(as_1, name), err_msg=name)


def test_folder_foreground_value_0_inverts_the_masks(tmp_path):
    write_folder_source(tmp_path)
    usual = load_folder(tmp_path, foreground_value=1)
    inverted = load_folder(tmp_path, foreground_value=0)
    np.testing.assert_array_equal(all_masks(inverted), 1 - all_masks(usual))
    np.testing.assert_array_equal(all_images(inverted), all_images(usual))


def test_folder_split_follows_the_fractions_and_the_seed(tmp_path):
    write_folder_source(tmp_path)
    first = load_folder(tmp_path, val_fraction=0.3, test_fraction=0.2, seed=0)
    assert (len(first.train), len(first.val), len(first.test)) == (5, 3, 2)
    again = load_folder(tmp_path, val_fraction=0.3, test_fraction=0.2, seed=0)
    other = load_folder(tmp_path, val_fraction=0.3, test_fraction=0.2, seed=1)
    np.testing.assert_array_equal(images_of(first, "test"), images_of(again, "test"))
    assert not np.array_equal(images_of(first, "train"), images_of(other, "train"))
    assert "test_fraction 0.2" in first.test_split_note


def test_folder_ignores_hidden_and_non_image_files(tmp_path):
    write_folder_source(tmp_path)
    (tmp_path / "images" / "README.txt").write_text("notes")
    (tmp_path / "masks" / ".DS_Store").write_bytes(b"\0\0")
    assert len(all_images(load_folder(tmp_path))) == 10


def _write_image(relative_path, array):
    return lambda root: Image.fromarray(array).save(root / relative_path)


def _remove_file(relative_path):
    return lambda root: (root / relative_path).unlink()


def _write_bytes(relative_path, data: bytes):
    return lambda root: (root / relative_path).write_bytes(data)


def _jpeg_mask(root):
    mask = np.zeros((64, 64), np.uint8)
    mask[10:50, 13:29] = 255  # edges inside JPEG's 8 x 8 blocks, so compression blurs them
    Image.fromarray(mask).save(root / "masks" / "1.jpg", quality=75)
    (root / "masks" / "1.png").unlink()


def _empty_images(root):
    for path in (root / "images").iterdir():
        path.unlink()
    (root / "images" / "README.txt").write_text("nothing here yet")


def _sixteen_bit_image(root):
    (root / "images" / "1.png").unlink()
    Image.fromarray(np.full((64, 64), 4000, np.uint16)).save(root / "images" / "1.png")


_MASK_128 = left_half_mask((64, 64)) * 128

BAD_FOLDER = {
    "image without mask": (_remove_file("masks/3.png"), "3.jpg"),
    "mask without image": (_remove_file("images/2.jpg"), "2.png"),
    "zero-byte image": (_write_bytes("images/0.png", b""), "0.png"),
    "corrupt image": (_write_bytes("images/0.png", b"\x89PNG not really"), "0.png"),
    "zero-byte mask": (_write_bytes("masks/4.png", b""), "4.png"),
    "mask valued 128": (_write_image("masks/1.png", _MASK_128), "1.png"),
    "JPEG mask": (_jpeg_mask, "1.jpg"),
    "mask of another size": (_write_image("masks/1.png", np.zeros((10, 10), np.uint8)), "1.png"),
    "two images named 1": (_write_image("images/1.jpg", np.zeros((64, 64, 3), np.uint8)), "1.jpg"),
    "16-bit image": (_sixteen_bit_image, "1.png"),
    "no images": (_empty_images, "images: no image files"),
    "no masks folder": (lambda root: shutil.rmtree(root / "masks"), "masks: folder not found"),
}


@pytest.mark.parametrize("break_it, file_name", BAD_FOLDER.values(), ids=BAD_FOLDER.keys())
def test_folder_bad_input_names_the_file(tmp_path, break_it, file_name):
    write_folder_source(tmp_path)
    break_it(tmp_path)
    with pytest.raises(FcnlabError, match=file_name.replace(".", r"\.")):
        load_folder(tmp_path)


def test_folder_unpaired_files_are_listed_by_name(tmp_path):
    write_folder_source(tmp_path)
    for i in range(7):
        (tmp_path / "masks" / f"{i}.png").unlink()
    expected = r"7 file\(s\).*: 0\.png, 1\.png, 2\.jpg, 3\.jpg, 4\.png and 2 more;"
    with pytest.raises(FcnlabError, match=expected) as err:
        load_folder(tmp_path)
    assert "\n" not in str(err.value)


def test_folder_missing_folder_is_named(tmp_path):
    with pytest.raises(FcnlabError, match="no_such_folder"):
        load_folder(tmp_path / "no_such_folder")


def test_folder_too_few_images_for_three_splits_names_the_folder(tmp_path):
    write_folder_source(tmp_path / "tiny", pairs=FOLDER_PAIRS[:2])
    with pytest.raises(FcnlabError, match="tiny.*too few"):
        load_folder(tmp_path / "tiny")


@pytest.mark.parametrize("fractions, key", [
    ((0.2, 0.0), "seg.test_fraction"),
    ((0.0, 0.2), "seg.val_fraction"),
    ((0.6, 0.4), r"seg.val_fraction \+ seg.test_fraction"),
    ((0.2, 1.2), "seg.test_fraction"),
])
def test_folder_fractions_out_of_range_name_the_key(tmp_path, fractions, key):
    write_folder_source(tmp_path / "folder")
    with pytest.raises(FcnlabError, match=key):
        prepare_seg_with(tmp_path, source="folder", path=str(tmp_path / "folder"), image_size=64,
                         val_fraction=fractions[0], test_fraction=fractions[1])


@pytest.mark.parametrize("foreground_value", [2, -1, True, 0.5])
def test_folder_foreground_value_must_be_0_or_1(tmp_path, foreground_value):
    write_folder_source(tmp_path / "folder")
    with pytest.raises(FcnlabError, match="seg.foreground_value"):
        prepare_seg_with(tmp_path, source="folder", path=str(tmp_path / "folder"), image_size=64,
                         foreground_value=foreground_value)


# --- Shared -----------------------------------------------------------------------------------


@pytest.mark.parametrize("image_size", [0, 16, 48, 100, 128.0])
@pytest.mark.parametrize("source", ["demo", "npy", "folder"])
def test_image_size_must_be_a_multiple_of_32(tmp_path, source, image_size):
    write_npy_source(tmp_path / "npy")
    write_folder_source(tmp_path / "folder")
    with pytest.raises(FcnlabError, match="seg.image_size must be an integer in .* multiple of 32"):
        prepare_seg_with(tmp_path, source=source, path=str(tmp_path / source), image_size=image_size,
                         demo={"n_train": 2, "n_val": 1, "n_test": 1})


def test_splits_are_named_like_the_fields_and_pair_each_image_with_its_mask(tmp_path):
    write_npy_source(tmp_path)
    splits = load_npy_source(tmp_path, 32, 0.2, seed=0)
    assert list(splits.splits()) == list(SPLITS)
    for name, split in splits.splits().items():
        assert split is getattr(splits, name)
        assert len(split.images) == len(split.masks) == len(split) > 0
        assert [image.shape[:2] for image in split.images] == [mask.shape for mask in split.masks]


def test_summary_is_json_with_counts_foreground_fractions_and_size_ranges(tmp_path):
    write_npy_source(tmp_path, test_labels=False)
    summary = segmentation_summary(load_npy_source(tmp_path, 64, 0.2, seed=0))
    square = {"height_px": [64, 64], "width_px": [64, 64]}
    assert json.loads(json.dumps(summary)) == {
        "test_split_note": "validation split (no seg_test_labels.npy given)",
        "train": {"count": 8, "foreground_fraction": 0.25, **square},
        "val": {"count": 2, "foreground_fraction": 0.25, **square},
        "test": {"count": 2, "foreground_fraction": 0.25, **square},
    }


# --- Resize policies: square (the seed's), keep_aspect, none ---------------------------------


def test_npy_keep_aspect_brings_the_longer_side_to_image_size(tmp_path):
    write_npy_source(tmp_path, height=40, width=48)
    splits = load_npy_source(tmp_path, image_size=64, val_fraction=0.2, seed=0, resize="keep_aspect")
    for split in splits.splits().values():
        for image, mask in zip(split.images, split.masks):
            assert image.shape == (53, 64, 3) and mask.shape == (53, 64)      # 40 x 48 * 64/48
    masks = all_masks(splits)
    assert set(np.unique(masks).tolist()) == {0, 1}
    assert abs(masks.mean() - 0.25) < 0.02


def test_npy_resize_none_keeps_every_image_and_mask_exactly(tmp_path):
    train_images = write_npy_source(tmp_path, height=40, width=48)
    splits = load_npy_source(tmp_path, image_size=64, val_fraction=0.2, seed=0, resize="none")
    kept = splits.train.images + splits.val.images
    assert sorted(image.tobytes() for image in kept) == sorted(image.tobytes() for image in train_images)
    np.testing.assert_array_equal(all_masks(splits), quarter_masks(14, 40, 48))


def test_folder_keep_aspect_gives_images_of_many_sizes_each_with_its_mask(tmp_path):
    splits = load_folder(write_folder_source(tmp_path), image_size=64)
    square_sizes = {image.shape[:2] for split in splits.splits().values() for image in split.images}
    assert square_sizes == {(64, 64)}
    splits = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, resize="keep_aspect")
    sizes = []
    for split in splits.splits().values():
        for image, mask in zip(split.images, split.masks):
            assert image.shape[:2] == mask.shape and image.dtype == mask.dtype == np.uint8
            assert max(mask.shape) == 64
            assert set(np.unique(mask).tolist()) == {0, 1}
            sizes.append(mask.shape)
    expected = sorted((round(h * 64 / max(w, h)), round(w * 64 / max(w, h))) for _, _, (w, h), _ in FOLDER_PAIRS)
    assert sorted(sizes) == expected
    summary = segmentation_summary(splits)
    heights = [h for h, _ in sizes]
    assert min(summary[name]["height_px"][0] for name in SPLITS) == min(heights)
    assert max(summary[name]["width_px"][1] for name in SPLITS) == 64


def test_folder_resize_none_keeps_each_image_at_its_own_size(tmp_path):
    splits = load_folder_source(write_folder_source(tmp_path), 64, 1, 0.2, 0.2, seed=0, resize="none")
    masks = [mask for split in splits.splits().values() for mask in split.masks]
    assert sorted(mask.shape for mask in masks) == sorted((h, w) for _, _, (w, h), _ in FOLDER_PAIRS)
    for mask in masks:
        np.testing.assert_array_equal(mask, left_half_mask(mask.shape[::-1]))


@pytest.mark.parametrize("resize, expected", [("square", (64, 64)), ("keep_aspect", (53, 64)),
                                              ("none", (80, 96))])
def test_read_image_and_mask_brings_one_pair_to_the_training_scale(tmp_path, resize, expected):
    pixels = np.random.default_rng(0).integers(0, 256, (80, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    Image.fromarray(left_half_mask((96, 80)) * 255).save(tmp_path / "mask.png")
    image, mask = read_image_and_mask(tmp_path / "image.png", tmp_path / "mask.png", resize, 64, 1)
    assert image.shape == expected + (3,) and image.dtype == np.uint8
    assert mask.shape == expected and set(np.unique(mask).tolist()) == {0, 1}
    assert mask[:, : expected[1] // 2].all() and not mask[:, expected[1] // 2 + 1:].any()
    if resize == "none":
        np.testing.assert_array_equal(image, pixels)
    inverted = read_image_and_mask(tmp_path / "image.png", tmp_path / "mask.png", resize, 64, 0)[1]
    np.testing.assert_array_equal(inverted, 1 - mask)


# --- prepare-seg: what it writes ----------------------------------------------------------------


@pytest.mark.parametrize("resize, size", [("square", (64, 64)), ("keep_aspect", (53, 64)), ("none", (40, 48))])
def test_prepare_seg_writes_the_splits_and_the_geometry_it_used(tmp_path, resize, size):
    write_npy_source(tmp_path / "npy", height=40, width=48)
    prepare_seg_with(tmp_path, source="npy", path=str(tmp_path / "npy"), resize=resize, image_size=64)
    out = tmp_path / "out"
    assert load_geometry(out) == {"resize": resize, "image_size": 64}
    expected = load_npy_source(tmp_path / "npy", 64, 0.2, seed=0, resize=resize)
    for name in SPLITS:
        split = load_prepared_split(out, name)
        assert {mask.shape for mask in split.masks} == {size}
        np.testing.assert_array_equal(np.stack(split.images), images_of(expected, name))
        np.testing.assert_array_equal(np.stack(split.masks), masks_of(expected, name))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["source"] == "npy" and summary["resize"] == resize and summary["image_size"] == 64
    assert summary["train"]["height_px"] == [size[0]] * 2 and summary["train"]["width_px"] == [size[1]] * 2


def test_prepare_seg_draws_the_demo_at_its_own_size_as_square(tmp_path):
    prepare_seg_with(tmp_path, source="demo", resize="keep_aspect", image_size=512,
                     demo={"image_size": 64, "n_train": 3, "n_val": 2, "n_test": 2})
    assert load_geometry(tmp_path / "out") == {"resize": "square", "image_size": 64}
    expected = demo_segmentation(3, 2, 2, image_size=64, seed=0)
    for name in SPLITS:
        split = load_prepared_split(tmp_path / "out", name)
        np.testing.assert_array_equal(np.stack(split.images), images_of(expected, name))
        np.testing.assert_array_equal(np.stack(split.masks), masks_of(expected, name))


@pytest.mark.parametrize("demo_size", [48, 0, 2048])
def test_demo_image_size_must_be_a_multiple_of_32(tmp_path, demo_size):
    with pytest.raises(FcnlabError, match="seg.demo.image_size must be an integer in .* multiple of 32"):
        prepare_seg_with(tmp_path, source="demo", image_size=64, demo={"image_size": demo_size})


def test_resize_must_be_a_known_policy(tmp_path):
    with pytest.raises(FcnlabError, match="seg.resize must be one of square, keep_aspect, none"):
        prepare_seg_with(tmp_path, source="demo", resize="stretch")


def test_prepare_seg_warns_when_the_training_masks_are_almost_empty(tmp_path, capsys):
    write_folder_source(tmp_path / "folder", mask_encoding="0/255")
    for mask in (tmp_path / "folder" / "masks").iterdir():
        with Image.open(mask) as opened:
            size = opened.size
        Image.new("L", size, 0).save(mask)                  # no foreground anywhere
    prepare_seg_with(tmp_path, source="folder", path=str(tmp_path / "folder"), image_size=64)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "seg.foreground_value" in warnings[0]

    shutil.rmtree(tmp_path / "folder")
    write_folder_source(tmp_path / "folder")
    prepare_seg_with(tmp_path, source="folder", path=str(tmp_path / "folder"), image_size=64)
    assert "warning:" not in capsys.readouterr().err
