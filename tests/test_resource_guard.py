"""prepare-seg's resources: it streams its source into shards, so its memory does not grow with
the data set, and it refuses to start when the disk cannot hold its output.

Every source knows its images' sizes at the training scale before reading any pixel (the params,
the .npy headers, the image files' headers); `prepared_bytes` turns them into the bytes the
shards will take, and `check_free_space` compares those with the free space.
"""

from __future__ import annotations

import importlib.util
import tracemalloc

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT
from fcnlab.core.errors import FcnlabError
from fcnlab.seg import sources as seg_data
from fcnlab.seg.shards import check_free_space, load_prepared_split, prepared_bytes, save_prepared_segmentation
from fcnlab.seg.sources import demo_source, folder_source, npy_source


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
    raise AssertionError("the sizes must come from the headers, before any image is decoded")


# --- Sizes before pixels --------------------------------------------------------------------------


def test_demo_sizes_come_from_the_params():
    source = demo_source(5, 2, 3, image_size=32, seed=0)
    assert source.sizes == {"train": [(32, 32)] * 5, "val": [(32, 32)] * 2, "test": [(32, 32)] * 3}


@pytest.mark.parametrize("resize, size", [("square", (32, 32)), ("keep_aspect", (27, 32)), ("none", (40, 48))])
def test_npy_sizes_come_from_the_headers_at_the_training_scale(tmp_path, resize, size):
    source = npy_source(write_npy_source(tmp_path), 32, 0.2, seed=0, resize=resize)
    assert {name: len(sizes) for name, sizes in source.sizes.items()} == {"train": 8, "val": 2, "test": 4}
    assert set(source.all_sizes()) == {size}


def test_npy_header_claiming_a_huge_array_is_refused_without_reading_it(tmp_path):
    write_npy_source(tmp_path)
    write_npy_header(tmp_path / "seg_train_imgs.npy", (10 ** 6, 4000, 4000, 3))
    with pytest.raises(FcnlabError, match="seg_train_imgs.npy: truncated") as raised:
        npy_source(tmp_path, 32, 0.2, seed=0)
    assert "\n" not in str(raised.value)


def test_npy_test_images_are_not_opened_without_test_labels(tmp_path):
    write_npy_source(tmp_path, test_labels=False)
    write_npy_header(tmp_path / "seg_test_imgs.npy", (10 ** 6, 4000, 4000, 3))
    assert len(npy_source(tmp_path, 32, 0.2, seed=0).sizes["test"]) == 2         # the validation split


@pytest.mark.parametrize("resize, size", [("square", (64, 64)), ("none", (40, 48)), ("keep_aspect", (53, 64))])
def test_folder_sizes_come_from_the_headers_without_decoding_an_image(tmp_path, monkeypatch, resize, size):
    write_folder_source(tmp_path, n=10, size=(48, 40))
    monkeypatch.setattr(seg_data, "open_image", refuse_to_read)
    source = folder_source(tmp_path, 64, 1, 0.2, 0.2, seed=0, resize=resize)
    assert len(source.all_sizes()) == 10 and set(source.all_sizes()) == {size}


# --- The disk-space check -------------------------------------------------------------------------


def test_the_check_counts_four_bytes_a_pixel_at_the_training_scale(tmp_path):
    source = folder_source(write_folder_source(tmp_path / "src", n=10, size=(400, 300)), 64, 1, 0.2, 0.2,
                           seed=0, resize="keep_aspect")                         # 400 x 300 -> 64 x 48
    needed = prepared_bytes(source.all_sizes())
    assert 10 * 64 * 48 * 4 < needed < 10 * 64 * 48 * 4 + 10_000
    with pytest.raises(FcnlabError, match=f"{tmp_path / 'out'}: prepare-seg's output needs .*{needed} bytes"):
        check_free_space(tmp_path / "out", needed, free_bytes=needed - 1)
    check_free_space(tmp_path / "out", needed, free_bytes=needed)
    save_prepared_segmentation(tmp_path / "out", source.splits(), {"resize": "keep_aspect", "image_size": 64})
    assert sum(path.stat().st_size for path in (tmp_path / "out").iterdir()) <= needed


def test_prepare_seg_checks_the_disk_before_writing_anything(tmp_path, monkeypatch):
    """The stage asks `free_disk_bytes` (shutil.disk_usage) about its output's folder; a disk with
    less room than the shards need stops it before the first scene is drawn."""
    spec = importlib.util.spec_from_file_location("prepare_seg", ROOT / "stages" / "prepare_seg.py")
    prepare_seg = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare_seg)
    monkeypatch.setattr(prepare_seg, "free_disk_bytes", lambda path: 10_000)
    monkeypatch.setattr(seg_data.demo_scenes, "render_scene", refuse_to_read)
    with pytest.raises(FcnlabError, match=r"out: prepare-seg's output needs about .* \(10000 bytes\) are free"):
        prepare_seg.main(prepare_seg_args(tmp_path, source="demo", demo={"image_size": 64, "n_train": 3,
                                                                          "n_val": 1, "n_test": 1}))
    assert not (tmp_path / "out").exists()


def prepare_seg_args(tmp_path, **seg):
    import argparse

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update({key: value for key, value in seg.items() if key != "demo"})
    params["seg"]["demo"].update(seg.get("demo", {}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return argparse.Namespace(params=str(tmp_path / "params.yaml"), out=str(tmp_path / "out"),
                              summary=str(tmp_path / "summary.json"))


# --- Memory that does not grow with the data set --------------------------------------------------


def peak_bytes_writing(folder, n_images: int, out) -> int:
    """The peak Python/NumPy memory of streaming an npy source of n_images 64 x 64 into shards."""
    write_npy_source(folder, n_train=n_images, n_test=4, height=64, width=64)
    source = npy_source(folder, 64, 0.2, seed=0, resize="none")
    tracemalloc.start()
    try:
        save_prepared_segmentation(out, source.splits(), {"resize": "none", "image_size": 64},
                                   shard_pixels=8 * 64 * 64)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_prepare_seg_memory_stays_flat_as_the_data_set_grows(tmp_path):
    small = peak_bytes_writing(tmp_path / "small", 20, tmp_path / "out_small")
    large = peak_bytes_writing(tmp_path / "large", 200, tmp_path / "out_large")
    shard_bytes = 8 * 64 * 64 * 4
    assert large < 1.5 * small and large < 6 * shard_bytes, (small, large)
    assert len(load_prepared_split(tmp_path / "out_large", "train").shards) == 20     # 160 images, 8 a shard


# --- The shipped default ----------------------------------------------------------------------


def test_params_yaml_shards_keep_the_demo_in_one_shard_a_split_and_shards_small():
    seg = yaml.safe_load((ROOT / "params.yaml").read_text())["seg"]
    demo = seg["demo"]
    assert demo["n_train"] * demo["image_size"] ** 2 <= seg["shard_megapixels"] * 1e6
    assert "max_megapixels" not in seg
    # ... and a shard (4 bytes a pixel) stays small next to memory: train-fcn holds about two.
    assert seg["shard_megapixels"] * 1e6 * 4 <= 100e6
