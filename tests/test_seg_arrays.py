"""The prepared segmentation layout: splits of images of any sizes, written as shards one image at
a time, and read back exactly."""

import numpy as np
import pytest

from fcnlab.core.errors import FcnlabError
from fcnlab.seg.arrays import SegSplit, load_geometry, load_test_predictions, save_split_arrays
from fcnlab.seg.shards import (check_free_space, load_prepared_split, prepared_bytes,
                               save_prepared_segmentation, shards_foreground_fraction)

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
    for written, read in zip(train.images + train.masks, [*loaded.images, *loaded.masks]):
        np.testing.assert_array_equal(written, read)
    assert loaded.common_shape() is None
    assert load_geometry(tmp_path / "seg") == GEOMETRY


def test_reading_reads_each_image_when_used_not_the_split_up_front(tmp_path):
    save_prepared_segmentation(tmp_path / "seg", {"test": ragged_split([(32, 32), (32, 32)])}, GEOMETRY)
    loaded = load_prepared_split(tmp_path / "seg", "test")
    shard = loaded.shards[0]
    with open(shard.images, "r+b") as file:          # changed after loading: the next read sees it
        file.seek(shard.images_offset)
        file.write(bytes([7, 7, 7]))
    assert loaded.images[0][0, 0].tolist() == [7, 7, 7]
    assert loaded.images[-1].shape == (32, 32, 3) and len(loaded.images[0:2]) == 2
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


ONE = "train-00000-of-00001"    # the only shard of a small split
PIXELS = 40 * 64 + 33 * 17


@pytest.mark.parametrize("corrupt, named", [
    (lambda d: (d / f"{ONE}_shapes.npy").unlink(), f"{ONE}_shapes.npy"),
    (lambda d: np.save(d / f"{ONE}_shapes.npy", np.array([[4, 4]])), f"{ONE}_images.npy"),
    (lambda d: np.save(d / f"{ONE}_images.npy", np.zeros((PIXELS, 3), np.float32)), f"{ONE}_images.npy"),
    (lambda d: np.save(d / f"{ONE}_masks.npy", np.full(PIXELS, 2, np.uint8)), f"{ONE}_masks.npy"),
    (lambda d: (d / f"{ONE}_images.npy").write_bytes((d / f"{ONE}_images.npy").read_bytes()[:200]), f"{ONE}_images.npy"),
    (lambda d: np.save(d / f"{ONE}_shapes.npy", np.array([[0, 4]])), f"{ONE}_shapes.npy"),
    (lambda d: np.save(d / f"{ONE}_images.npy", np.asfortranarray(np.zeros((PIXELS, 3), np.uint8))),
     f"{ONE}_images.npy"),
    (lambda d: np.save(d / "train-00001-of-00002_shapes.npy", np.array([[4, 4]])), "train-00001-of-00002_shapes.npy"),
    (lambda d: (d / f"{ONE}_shapes.npy").rename(d / "train_shapes.npy"), "train_shapes.npy"),
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


# --- Shards --------------------------------------------------------------------------------------


def shard_names(directory) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


def test_a_small_cap_cuts_a_split_into_shards_that_read_back_equal(tmp_path):
    train = ragged_split([(10, 10), (20, 5), (8, 8), (30, 30), (4, 4)])
    stats = save_prepared_segmentation(tmp_path / "seg", {"train": train}, GEOMETRY, shard_pixels=200)
    # 100 + 100 fit one shard, 64 the next, 900 (over the cap) its own, then 16
    assert [name for name in shard_names(tmp_path / "seg") if name.endswith("_shapes.npy")] == [
        f"train-0000{i}-of-00004_shapes.npy" for i in range(4)]
    loaded = load_prepared_split(tmp_path / "seg", "train")
    assert [len(shard.shapes) for shard in loaded.shards] == [2, 1, 1, 1]
    for written, read in zip(train.images + train.masks, [*loaded.images, *loaded.masks]):
        np.testing.assert_array_equal(written, read)
    assert stats["train"].count == 5 and stats["train"].foreground_fraction() == pytest.approx(
        train.foreground_fraction())
    assert [shard.foreground_pixels for shard in loaded.shards] == [
        int(sum(m.sum() for m in train.masks[:2])), *(int(m.sum()) for m in train.masks[2:])]
    assert shards_foreground_fraction(loaded.shards) == pytest.approx(train.foreground_fraction(), abs=1e-12)


def test_shards_are_written_from_a_stream_read_once(tmp_path):
    train = ragged_split([(6, 6)] * 7)
    consumed = []

    def pairs():
        for pair in train:
            consumed.append(1)
            yield pair

    save_prepared_segmentation(tmp_path / "seg", {"train": pairs()}, GEOMETRY, shard_pixels=80)
    assert len(consumed) == 7
    assert len(load_prepared_split(tmp_path / "seg", "train").shards) == 4       # 2 + 2 + 2 + 1 images


def test_sharded_reruns_write_the_same_bytes(tmp_path):
    for name in ("a", "b"):
        save_prepared_segmentation(tmp_path / name, {"train": ragged_split([(20, 30), (30, 20), (9, 9)]),
                                                     "val": ragged_split([(5, 5)], seed=1)}, GEOMETRY,
                                   shard_pixels=700)
    assert shard_names(tmp_path / "a") == shard_names(tmp_path / "b")
    assert len(shard_names(tmp_path / "a")) == 1 + 3 * (2 + 1)
    for file in sorted((tmp_path / "a").iterdir()):
        assert file.read_bytes() == (tmp_path / "b" / file.name).read_bytes(), file.name


def test_a_crash_mid_write_leaves_the_old_output_and_no_partial_one(tmp_path):
    save_prepared_segmentation(tmp_path / "seg", {"train": ragged_split([(8, 8)])}, GEOMETRY)
    before = {name: (tmp_path / "seg" / name).read_bytes() for name in shard_names(tmp_path / "seg")}

    def crashing():
        yield from ragged_split([(8, 8)] * 5)
        raise OSError("disk unplugged")

    with pytest.raises(OSError, match="disk unplugged"):
        save_prepared_segmentation(tmp_path / "seg", {"train": crashing()}, GEOMETRY, shard_pixels=64)
    assert {name: (tmp_path / "seg" / name).read_bytes() for name in shard_names(tmp_path / "seg")} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["seg"]          # no temporary left behind
    with pytest.raises(OSError):
        save_prepared_segmentation(tmp_path / "new", {"train": crashing()}, GEOMETRY, shard_pixels=64)
    assert not (tmp_path / "new").exists()


def test_a_missing_middle_shard_is_named(tmp_path):
    save_prepared_segmentation(tmp_path / "seg", {"train": ragged_split([(8, 8)] * 3)}, GEOMETRY, shard_pixels=64)
    for kind in ("shapes", "images", "masks"):
        (tmp_path / "seg" / f"train-00001-of-00003_{kind}.npy").unlink()
    with pytest.raises(FcnlabError, match="train-00001-of-00003_shapes.npy: missing") as raised:
        load_prepared_split(tmp_path / "seg", "train")
    assert "prepare-seg" in str(raised.value) and "\n" not in str(raised.value)


# --- The disk-space check ------------------------------------------------------------------------


def test_prepared_bytes_bound_what_is_written(tmp_path):
    sizes = [(10, 10), (20, 5), (8, 8), (30, 30), (4, 4)]
    save_prepared_segmentation(tmp_path / "seg", {"train": ragged_split(sizes)}, GEOMETRY, shard_pixels=200)
    written = sum(path.stat().st_size for path in (tmp_path / "seg").iterdir())
    assert written <= prepared_bytes(sizes) <= written + 8192


def test_the_disk_check_names_the_folder_the_bytes_and_the_fix():
    check_free_space("data/prepared/seg", needed_bytes=1000, free_bytes=1000)
    with pytest.raises(FcnlabError) as raised:
        check_free_space("data/prepared/seg", needed_bytes=5_200_000_000, free_bytes=1_000_000_000)
    message = str(raised.value)
    for words in ("data/prepared/seg", "5200000000 bytes", "1000000000 bytes", "free some space",
                  "seg.image_size"):
        assert words in message
    assert "\n" not in message
