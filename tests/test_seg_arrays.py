"""The prepared segmentation layout: splits of images of any sizes, written and read back exactly."""

import numpy as np
import pytest

from fcnlab.core.errors import FcnlabError
from fcnlab.seg.arrays import (SegSplit, load_geometry, load_prepared_split, load_test_predictions,
                               save_prepared_segmentation, save_split_arrays)

GEOMETRY = {"resize": "none", "image_size": 512}


def ragged_split(sizes, seed=0) -> SegSplit:
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    masks = [(rng.random((h, w)) < 0.3).astype(np.uint8) for h, w in sizes]
    return SegSplit(images, masks)


def test_images_of_different_sizes_come_back_exactly(tmp_path):
    train = ragged_split([(40, 64), (33, 17), (64, 64)])
    save_prepared_segmentation(tmp_path / "seg", {"train": train}, GEOMETRY)
    loaded = load_prepared_split(tmp_path / "seg", "train")
    assert len(loaded) == 3
    for written, read in zip(train.images + train.masks, loaded.images + loaded.masks):
        np.testing.assert_array_equal(written, read)
    assert loaded.common_shape() is None
    assert load_geometry(tmp_path / "seg") == GEOMETRY


def test_reading_maps_the_files_instead_of_loading_them(tmp_path):
    save_prepared_segmentation(tmp_path / "seg", {"test": ragged_split([(32, 32), (32, 32)])}, GEOMETRY)
    loaded = load_prepared_split(tmp_path / "seg", "test")
    assert isinstance(loaded.images[0].base, np.memmap) or isinstance(loaded.images[0], np.memmap)
    assert loaded.common_shape() == (32, 32)
    images, masks = loaded.stacked()
    assert images.shape == (2, 32, 32, 3) and masks.shape == (2, 32, 32)


def test_same_splits_write_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        save_prepared_segmentation(tmp_path / name, {"train": ragged_split([(20, 30), (30, 20)])}, GEOMETRY)
    for file in sorted((tmp_path / "a").iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_foreground_fraction_counts_every_pixel_of_every_image():
    split = SegSplit([np.zeros((2, 2, 3), np.uint8), np.zeros((1, 4, 3), np.uint8)],
                     [np.array([[1, 0], [0, 0]], np.uint8), np.array([[1, 1, 1, 0]], np.uint8)])
    assert split.foreground_fraction() == pytest.approx(4 / 8)


@pytest.mark.parametrize("corrupt, named", [
    (lambda d: (d / "train_shapes.npy").unlink(), "train_shapes.npy"),
    (lambda d: np.save(d / "train_shapes.npy", np.array([[4, 4]])), "train_images.npy"),
    (lambda d: np.save(d / "train_images.npy", np.zeros((40 * 64 + 33 * 17, 3), np.float32)), "train_images.npy"),
    (lambda d: np.save(d / "train_masks.npy", np.full(40 * 64 + 33 * 17, 2, np.uint8)), "train_masks.npy"),
    (lambda d: (d / "train_images.npy").write_bytes((d / "train_images.npy").read_bytes()[:200]), "train_images.npy"),
    (lambda d: np.save(d / "train_shapes.npy", np.array([[0, 4]])), "train_shapes.npy"),
])
def test_a_damaged_split_is_refused_naming_the_file(tmp_path, corrupt, named):
    save_prepared_segmentation(tmp_path / "seg", {"train": ragged_split([(40, 64), (33, 17)])}, GEOMETRY)
    corrupt(tmp_path / "seg")
    with pytest.raises(FcnlabError, match=named) as raised:
        load_prepared_split(tmp_path / "seg", "train")
    assert "prepare-seg" in str(raised.value) and "\n" not in str(raised.value)


def test_predictions_must_match_the_test_images(tmp_path):
    test = ragged_split([(8, 8), (4, 6)])
    probs = [np.full((8, 8), 0.25, np.float32), np.full((4, 6), 0.75, np.float32)]
    save_split_arrays(tmp_path, "test", fg_probs=probs)
    back = load_test_predictions(tmp_path, test)
    np.testing.assert_array_equal(back[1], probs[1])
    with pytest.raises(FcnlabError, match="other data"):
        load_test_predictions(tmp_path, ragged_split([(8, 8), (6, 4)]))
    save_split_arrays(tmp_path, "test", fg_probs=[p * 2 for p in probs])
    with pytest.raises(FcnlabError, match=r"outside \[0, 1\]"):
        load_test_predictions(tmp_path, test)


def test_a_geometry_record_must_name_a_known_policy(tmp_path):
    (tmp_path / "g.json").write_text('{"resize": "stretch", "image_size": 128}')
    with pytest.raises(FcnlabError, match="g.json: not a geometry record"):
        load_geometry(tmp_path / "g.json")
