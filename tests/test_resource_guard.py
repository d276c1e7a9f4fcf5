"""seg.max_megapixels: prepare-seg refuses to hold too many pixels, before reading or drawing any.

The limit counts images x seg.image_size^2 (an npy image at its stored size while it is loaded,
if that is larger; a folder image under keep_aspect or none at its training scale, read from its
header); train-fcn needs about `TRAINING_BYTES_PER_PIXEL` bytes per pixel.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT
from fcnlab.seg import sources as seg_data
from fcnlab.core.errors import FcnlabError
from fcnlab.seg.sources import (TRAINING_BYTES_PER_PIXEL, check_pixel_budget, demo_segmentation,
                             load_folder_source, load_npy_source)


def one_hot_quarter(n, height, width):
    masks = np.zeros((n, height, width), np.uint8)
    masks[:, : height // 2, : width // 2] = 1
    return np.stack([1 - masks, masks], axis=-1)              # N x H x W x 2


def write_npy_source(folder, n_train=10, n_test=4, height=40, width=48, test_labels=True):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "seg_train_imgs.npy", np.zeros((n_train, height, width, 3), np.uint8))
    np.save(folder / "seg_train_labels.npy", one_hot_quarter(n_train, height, width))
    np.save(folder / "seg_test_imgs.npy", np.zeros((n_test, height, width, 3), np.uint8))
    if test_labels:
        np.save(folder / "seg_test_labels.npy", one_hot_quarter(n_test, height, width))
    return folder


def write_npy_header(path, shape):
    """A .npy file whose header claims `shape` (uint8) but that holds only 16 bytes."""
    with open(path, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "|u1", "fortran_order": False, "shape": shape})
        file.write(b"\0" * 16)


def write_folder_source(root, n=10, size=(48, 40)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        Image.new("RGB", size, (20 * i, 0, 0)).save(root / "images" / f"{i}.png")
        Image.new("L", size, 255 * (i % 2)).save(root / "masks" / f"{i}.png")
    return root


def refuse_to_read(*args, **kwargs):
    raise AssertionError("the guard must refuse before any data is read")


# --- The check itself -------------------------------------------------------------------------


def test_exactly_the_limit_passes_and_one_pixel_more_is_refused():
    check_pixel_budget(100_000_000, "some images", 100, origin="here")
    with pytest.raises(FcnlabError, match="here: some images would hold 1e\\+08 pixels"):
        check_pixel_budget(100_000_001, "some images", 100, origin="here")


def test_the_message_names_the_key_the_numbers_and_the_ways_out():
    with pytest.raises(FcnlabError) as err:
        check_pixel_budget(3_200_000_000, "5000 images of 800 x 800 px", 100, origin="data/raw/seg")
    message = str(err.value)
    gigabytes = 3.2e9 * TRAINING_BYTES_PER_PIXEL / 1e9
    assert f"about {gigabytes:.3g} GB of memory in train-fcn" in message
    for words in ("data/raw/seg", "5000 images of 800 x 800 px", "3.2e+09 pixels", "seg.max_megapixels = 100",
                  "raise seg.max_megapixels", "lower seg.image_size", "use fewer images"):
        assert words in message
    assert "\n" not in message


def test_no_limit_means_no_check():
    check_pixel_budget(10 ** 15, "anything", None, origin="here")


@pytest.mark.parametrize("limit", [0, -1, True, "100", float("nan")])
def test_a_limit_that_is_not_a_positive_number_is_refused(tmp_path, limit):
    from test_seg_data import prepare_seg_with

    with pytest.raises(FcnlabError, match="seg.max_megapixels must be a number > 0"):
        prepare_seg_with(tmp_path, source="demo", max_megapixels=limit)


# --- Each source is checked before its data is read --------------------------------------------


def test_demo_over_the_limit_is_refused_before_any_digit_is_read(monkeypatch):
    monkeypatch.setattr(seg_data, "_mnist_digits", refuse_to_read)
    with pytest.raises(FcnlabError, match=r"seg.demo: 224 scenes of 1024 x 1024 px .* "
                                          r"seg.max_megapixels = 100 million"):
        demo_segmentation(160, 32, 32, image_size=1024, seed=0, max_megapixels=100)


def test_demo_within_the_limit_is_drawn():
    splits = demo_segmentation(2, 1, 1, image_size=32, seed=0, max_megapixels=4 * 32 * 32 / 1e6)
    assert len(splits.train) == 2


def test_npy_header_claiming_a_huge_array_is_refused_without_reading_it(tmp_path, monkeypatch):
    write_npy_source(tmp_path)
    write_npy_header(tmp_path / "seg_train_imgs.npy", (10 ** 6, 4000, 4000, 3))
    monkeypatch.setattr(seg_data, "load_npy", refuse_to_read)
    with pytest.raises(FcnlabError, match="seg_train_imgs.npy.*1000004 images of up to 4000 x 4000 px "
                                          r"\(their stored size\)"):
        load_npy_source(tmp_path, 32, 0.2, seed=0, max_megapixels=100)


def test_npy_images_count_at_their_stored_size_when_larger(tmp_path):
    write_npy_source(tmp_path, n_train=10, n_test=4, height=400, width=400)
    pixels = 14 * 400 * 400                                      # 2.24 million, not 14 x 32 x 32
    with pytest.raises(FcnlabError, match="14 images of up to 400 x 400 px"):
        load_npy_source(tmp_path, 32, 0.2, seed=0, max_megapixels=pixels / 1e6 - 0.01)
    load_npy_source(tmp_path, 32, 0.2, seed=0, max_megapixels=pixels / 1e6)


def test_npy_images_count_at_image_size_when_smaller(tmp_path):
    write_npy_source(tmp_path, n_train=10, n_test=4, height=8, width=8)
    pixels = 14 * 64 * 64
    with pytest.raises(FcnlabError, match="14 images of up to 64 x 64 px;?"):
        load_npy_source(tmp_path, 64, 0.2, seed=0, max_megapixels=pixels / 1e6 - 0.001)
    load_npy_source(tmp_path, 64, 0.2, seed=0, max_megapixels=pixels / 1e6)


def test_npy_test_images_count_only_when_they_are_read(tmp_path):
    """Without seg_test_labels.npy the test images are never loaded, so they cost nothing."""
    write_npy_source(tmp_path, test_labels=False)
    write_npy_header(tmp_path / "seg_test_imgs.npy", (10 ** 6, 4000, 4000, 3))
    splits = load_npy_source(tmp_path, 32, 0.2, seed=0, max_megapixels=10 * 40 * 48 / 1e6)
    assert len(splits.train) == 8


def test_folder_counts_its_image_pairs_at_image_size_before_opening_any(tmp_path, monkeypatch):
    write_folder_source(tmp_path, n=10)
    monkeypatch.setattr(seg_data, "open_image", refuse_to_read)
    with pytest.raises(FcnlabError, match="10 images at 64 x 64 px would hold 4.1e\\+04 pixels"):
        load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=0.04)


def test_folder_within_the_limit_is_read(tmp_path):
    write_folder_source(tmp_path, n=10)
    splits = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=10 * 64 * 64 / 1e6)
    assert len(splits.train) == 6


@pytest.mark.parametrize("resize, pixels, words", [
    ("none", 10 * 48 * 40, "10 images at their own size"),
    ("keep_aspect", 10 * 64 * 53, "10 images at their longer side 64 px"),      # 48 x 40 -> 64 x 53
])
def test_folder_counts_other_policies_at_their_training_scale_from_the_headers(tmp_path, monkeypatch,
                                                                                resize, pixels, words):
    write_folder_source(tmp_path, n=10, size=(48, 40))
    with monkeypatch.context() as patched:
        patched.setattr(seg_data, "open_image", refuse_to_read)
        with pytest.raises(FcnlabError, match=words):
            load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=(pixels - 1) / 1e6,
                               resize=resize)
    splits = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=pixels / 1e6, resize=resize)
    assert sum(mask.size for split in splits.splits().values() for mask in split.masks) <= pixels


def test_folder_image_larger_than_its_training_scale_counts_at_its_stored_size(tmp_path):
    """keep_aspect shrinks a 400 x 300 image to 64 x 48, but it is held at 400 x 300 while read."""
    write_folder_source(tmp_path, n=10, size=(400, 300))
    pixels = 10 * 400 * 300
    with pytest.raises(FcnlabError, match="would hold 1.2e\\+06 pixels"):
        load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=(pixels - 1) / 1e6,
                           resize="keep_aspect")
    splits = load_folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, max_megapixels=pixels / 1e6,
                                resize="keep_aspect")
    assert {mask.shape for mask in splits.train.masks} == {(48, 64)}


# --- The shipped default ----------------------------------------------------------------------


def test_params_yaml_sets_a_limit_that_the_default_demo_fits_well_inside():
    seg = yaml.safe_load((ROOT / "params.yaml").read_text())["seg"]
    demo = seg["demo"]
    demo_pixels = (demo["n_train"] + demo["n_val"] + demo["n_test"]) * demo["image_size"] ** 2
    assert demo_pixels * 10 < seg["max_megapixels"] * 1e6
    # ... and a real data set of a few hundred images at seg.image_size.
    assert 300 * seg["image_size"] ** 2 < seg["max_megapixels"] * 1e6
    # ... and that keeps train-fcn's arrays within a few GB.
    assert seg["max_megapixels"] * 1e6 * TRAINING_BYTES_PER_PIXEL <= 8e9
