"""Tiled prediction (fcnlab.seg.tiling): windows, reading, stitching, and exactness on FCN-8s.

The FCN-8s tests use a tiny head (width 8, random weights) on 490 x 130 px images: the exact
margin (224 px) needs tiles of at least 480 px, so a few VGG16 passes at that size are the cost
of the file. They tile one axis each; the box-filter tests cover windows tiled both ways.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fcnlab.seg.model import fcn8s_vgg16
from fcnlab.seg.predict import predict_foreground, predict_images
from fcnlab.seg.tiling import (EXACT_MARGIN_PX, check_tiling, needs_tiling,
                               predict_tiled, read_padded_window, tile_windows)

TOLERANCE = 1e-6            # float32 rounding; on CPU the stitched result is measured bit-identical
SMALLEST_EXACT_TILE_PX = 2 * EXACT_MARGIN_PX + 32


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def box_filter_probs(tiles: np.ndarray) -> np.ndarray:
    """A real predictor with a 1-px reach: each pixel's 3x3 mean brightness (zero padded), / 255.
    Any margin >= 32 stitches it exactly; margin 0 does not."""
    padded = np.pad(tiles.mean(axis=-1), [(0, 0), (1, 1), (1, 1)])             # n x h+2 x w+2
    height, width = tiles.shape[1:3]
    total = sum(padded[:, dy:dy + height, dx:dx + width] for dy in range(3) for dx in range(3))
    return (total / (9 * 255)).astype(np.float32)                              # n x h x w


def whole_image(predict_batch, image: np.ndarray) -> np.ndarray:
    """The one-piece reference: the image reflect-padded to multiples of 32, predicted, cropped."""
    height, width = image.shape[:2]
    padded = np.pad(image, [(0, -height % 32), (0, -width % 32), (0, 0)], mode="reflect")
    return predict_batch(padded[None].astype(np.float32))[0, :height, :width]


# --- The windows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("height, width, tile_px, margin_px", [
    (1000, 700, 256, 64), (500, 510, 480, 224), (97, 2000, 128, 32), (64, 64, 64, 0), (33, 31, 64, 0)])
def test_kept_parts_cover_the_image_exactly_once(height, width, tile_px, margin_px):
    covered = np.zeros((height, width), dtype=int)
    for window in tile_windows(height, width, tile_px, margin_px):
        covered[window.keep_rows, window.keep_cols] += 1
    assert (covered == 1).all()


@pytest.mark.parametrize("height, width, tile_px, margin_px", [
    (1000, 700, 256, 64), (500, 510, 480, 224), (97, 2000, 128, 32), (3000, 3000, 1024, 224)])
def test_windows_share_one_shape_on_the_32px_grid_and_keep_a_margin_inside(height, width, tile_px,
                                                                           margin_px):
    padded_height, padded_width = -(-height // 32) * 32, -(-width // 32) * 32
    windows = tile_windows(height, width, tile_px, margin_px)
    assert len({(w.rows.stop - w.rows.start, w.cols.stop - w.cols.start) for w in windows}) == 1
    for w in windows:
        for window, keep, padded in ((w.rows, w.keep_rows, padded_height), (w.cols, w.keep_cols, padded_width)):
            assert window.start % 32 == 0 and 0 <= window.start and window.stop <= padded
            assert keep.start < keep.stop
            assert window.start == 0 or keep.start >= window.start + margin_px
            assert window.stop == padded or keep.stop <= window.stop - margin_px


def test_read_padded_window_equals_slicing_the_reflect_padded_image():
    for height, width in ((70, 45), (5, 3), (1, 40)):
        image = random_image(height, width)
        padded_height, padded_width = -(-height // 32) * 32, -(-width // 32) * 32
        padded = np.pad(image, [(0, padded_height - height), (0, padded_width - width), (0, 0)],
                        mode="reflect")
        for rows in (slice(0, padded_height), slice(padded_height - 32, padded_height)):
            for cols in (slice(0, 32), slice(padded_width - 32, padded_width)):
                np.testing.assert_array_equal(read_padded_window(image, rows, cols), padded[rows, cols])


# --- Stitching, on a predictor whose reach is known -------------------------------------------------


def test_tiles_stitch_to_the_whole_image_for_a_margin_beyond_the_predictors_reach():
    image = random_image(300, 450, seed=1)
    tiled = predict_tiled(box_filter_probs, image, tile_px=128, margin_px=32)
    np.testing.assert_allclose(tiled, whole_image(box_filter_probs, image), rtol=0, atol=TOLERANCE)


def test_tiles_without_a_margin_differ_along_the_seams():
    image = random_image(300, 450, seed=1)
    error = np.abs(predict_tiled(box_filter_probs, image, tile_px=128, margin_px=0)
                   - whole_image(box_filter_probs, image))
    assert error[:, 127:129].max() > 0.01          # the columns either side of the first seam
    assert error[10:118, 10:118].max() <= TOLERANCE  # away from the seams, the same


def test_tiles_go_to_predict_batch_in_batches_of_one_shape():
    image = random_image(300, 450, seed=1)
    shapes = []

    def recording(tiles):
        shapes.append(tiles.shape)
        assert tiles.dtype == np.float32
        return box_filter_probs(tiles)

    batched = predict_tiled(recording, image, tile_px=128, margin_px=32, tiles_per_batch=5)
    windows = len(tile_windows(300, 450, 128, 32))
    assert [n for n, *_ in shapes] == [5] * (windows // 5) + [windows % 5] and windows % 5
    assert {tuple(shape[1:]) for shape in shapes} == {(128, 128, 3)}
    np.testing.assert_array_equal(batched, predict_tiled(box_filter_probs, image, 128, 32))


def test_a_memory_mapped_image_gives_the_same_result(tmp_path):
    image = random_image(300, 450, seed=1)
    np.save(tmp_path / "image.npy", image)
    mapped = np.load(tmp_path / "image.npy", mmap_mode="r")
    np.testing.assert_array_equal(predict_tiled(box_filter_probs, mapped, 128, 32),
                                  predict_tiled(box_filter_probs, image, 128, 32))


# --- Whole or tiled ---------------------------------------------------------------------------------


def test_needs_tiling_compares_the_padded_pixels_with_the_budget():
    assert not needs_tiling(1000, 1000, max_pixels=1024 * 1024)     # pads to 1024 x 1024
    assert needs_tiling(1025, 1000, max_pixels=1024 * 1024)         # pads to 1056 x 1024
    assert not needs_tiling(4000, 200, max_pixels=4000 * 224)


# --- FCN-8s: the exact margin ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fcn_predict_batch():
    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=8, encoder_weights="none", freeze_encoder=True)
    return model, (lambda tiles: predict_foreground(model, tiles))


@pytest.fixture(scope="module")
def whole_predictions(fcn_predict_batch):
    """Two non-square images that each pad to two 480-px tiles, one tiled down, one across."""
    model, _ = fcn_predict_batch
    images = {"down": random_image(490, 130, seed=2), "across": random_image(130, 490, seed=3)}
    return {name: (image, predict_images(model, [image])[0]) for name, image in images.items()}


@pytest.mark.parametrize("direction", ["down", "across"])
def test_fcn8s_tiles_with_the_exact_margin_equal_the_whole_image_prediction(
        fcn_predict_batch, whole_predictions, direction):
    _, predict_batch = fcn_predict_batch
    image, whole = whole_predictions[direction]
    assert whole.std() > 0.05                        # a model whose output varies: the test can fail
    assert len(tile_windows(*image.shape[:2], SMALLEST_EXACT_TILE_PX, EXACT_MARGIN_PX)) == 2
    tiled = predict_tiled(predict_batch, image, SMALLEST_EXACT_TILE_PX, EXACT_MARGIN_PX)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=TOLERANCE)


def test_fcn8s_tiles_with_a_margin_one_grid_step_smaller_are_not_exact(fcn_predict_batch,
                                                                       whole_predictions):
    _, predict_batch = fcn_predict_batch
    image, whole = whole_predictions["down"]
    tiled = predict_tiled(predict_batch, image, SMALLEST_EXACT_TILE_PX, EXACT_MARGIN_PX - 32)
    assert np.abs(tiled - whole).max() > 10 * TOLERANCE     # 192 px < the 220 px FCN-8s reaches


def test_fcn8s_image_within_one_tile_goes_through_unchanged(fcn_predict_batch):
    model, predict_batch = fcn_predict_batch
    image = random_image(100, 70, seed=3)
    np.testing.assert_array_equal(predict_tiled(predict_batch, image, SMALLEST_EXACT_TILE_PX),
                                  predict_images(model, [image])[0])


# --- Bad arguments ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tile_px, margin_px, tiles_per_batch, message", [
    (1000, 224, 1, "tile_px 1000: must be a positive multiple of 32"),
    (0, 0, 1, "tile_px 0: must be a positive multiple of 32"),
    (1024, 100, 1, "margin_px 100: must be 0 or a positive multiple of 32"),
    (1024, -32, 1, "margin_px -32: must be 0 or a positive multiple of 32"),
    (448, 224, 1, "margin_px 224 is too large for tile_px 448.*use tile_px >= 2 \\* margin_px \\+ 32 = 480"),
    (1024, 224, 0, "tiles_per_batch 0: must be a positive integer"),
])
def test_bad_tiling_arguments_raise_value_errors_that_say_what_to_use(tile_px, margin_px,
                                                                       tiles_per_batch, message):
    with pytest.raises(ValueError, match=message):
        check_tiling(tile_px, margin_px, tiles_per_batch)
    with pytest.raises(ValueError, match=message):
        predict_tiled(box_filter_probs, random_image(64, 64), tile_px, margin_px, tiles_per_batch)


def test_an_image_that_is_not_rgb_is_refused():
    with pytest.raises(ValueError, match=r"image of shape \(64, 64\): expected H x W x 3"):
        predict_tiled(box_filter_probs, np.zeros((64, 64), dtype=np.uint8), 128, 32)


def test_a_predictor_returning_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"predict_batch returned shape \(1, 64, 64, 2\)"):
        predict_tiled(lambda tiles: np.zeros(tiles.shape[:3] + (2,)), random_image(64, 64), 128, 32)


def test_a_pixel_budget_below_one_grid_block_is_refused():
    with pytest.raises(ValueError, match="max_pixels 100: must be at least 1024"):
        needs_tiling(64, 64, max_pixels=100)
