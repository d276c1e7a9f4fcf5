"""Segmenting very large images tile by tile, stitched so the result equals one whole-image pass.

    image HxWx3 uint8 (in memory, or an np.memmap / any array read lazily by slices)
      │ windows: tile_px x tile_px squares of the padded image H'xW'     (H', W' = next multiples of 32,
      │          on the 32-px grid, overlapping by 2 * margin_px          bottom/right mirrored as
      │                                                                   fcnlab.seg.geometry pads;
      │                                                                   read window by window)
      │ predict_batch, a few windows at a time                           n x tile x tile
      ▼ keep each window's core, write it into the output                HxW float32

Only the output (H*W float32) and a few windows are ever in memory: the padded image is never
built whole. An image whose padded size fits in one tile goes through as one window, which is
exactly what `fcnlab.seg.predict.predict_images` computes for it.

Why a 224-px margin makes the stitch exact. FCN-8s pads every convolution with zeros ("same"),
so a window's border differs from the whole image there: inside the window the padding zeros
stand where the whole image has pixels. That error spreads inwards layer by layer. Counting, at
each layer, how many cells next to a window edge are affected (the same on all four sides; the
2x2 pools are "valid" and the windows start on the 32-px grid, so every pool and every transposed
convolution sees the same cell phases as in the whole image):

    layer                       affected border   in input px
    block1 conv x2 (3x3)        2 cells  @ 1 px          2
    block1_pool                 1        @ 2             2
    block2 conv x2              3        @ 2             6
    block2_pool                 2        @ 4             8
    block3 conv x3              5        @ 4            20
    block3_pool                 3        @ 8            24
    block4 conv x3, pool        6 -> 3   @ 16           48
    block5 conv x3, pool        6 -> 3   @ 32           96
    conv6 (7x7)                 6        @ 32          192     fc7 and score are 1x1: no spread
    up2_pool5 (4x4 /2)          13       @ 16          208     output o reads inputs (o-2)/2..(o+1)/2
    fuse_pool4 (+ pool4's 3)    13       @ 16          208
    up2_fuse (4x4 /2)           27       @ 8           216
    fuse_pool3 (+ pool3's 3)    27       @ 8           216
    up8_softmax (16x16 /8)      220      @ 1           220     output o reads inputs (o-11)/8..(o+4)/8

So the outermost 220 px of a window can differ from the whole image, and every pixel further in
is computed from the same numbers (to float32 rounding: convolutions of other map sizes may sum
in another order). `EXACT_MARGIN_PX` rounds 220 up to the 32-px grid. The error fades towards
the inside, so a smaller margin trades accuracy for speed but is never exact; on random-weight
models the largest error of a kept pixel was 0.43 with no margin, 2e-2 at 32 px, 1e-3 at 64 to
96 px, 2e-4 at 160 px and 2e-5 at 192 px. A window's border on the image's own edge needs no
margin: there the window is padded with zeros exactly as the whole image is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fcnlab.seg.geometry import IMAGE_SIZE_MULTIPLE as GRID_PX
from fcnlab.seg.geometry import padded_size

EXACT_MARGIN_PX = 224      # FCN-8s' 220-px affected border (see above), rounded up to the grid
DEFAULT_TILE_PX = 1024     # window side: bounds one forward pass's memory
DEFAULT_MAX_PIXELS = DEFAULT_TILE_PX ** 2   # a padded image up to this many pixels goes whole

# (n, h, w, 3) float32 RGB 0..255 -> (n, h, w) foreground probabilities, e.g.
# lambda tiles: fcnlab.seg.predict.predict_foreground(model, tiles)
PredictBatch = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Window:
    """One tile: the padded-image rows/cols fed to the model, and the image rows/cols it fills."""
    rows: slice          # in the padded image, H'
    cols: slice          # in the padded image, W'
    keep_rows: slice     # in the image, H (inside `rows`, at least the margin from its inner edges)
    keep_cols: slice     # in the image, W

    def kept_part(self, probabilities: np.ndarray) -> np.ndarray:
        """This window's h x w prediction -> the part that goes to [keep_rows, keep_cols]."""
        return probabilities[_relative(self.keep_rows, self.rows), _relative(self.keep_cols, self.cols)]


def needs_tiling(height: int, width: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """Whether an H x W image, once padded to multiples of 32, has more than `max_pixels` pixels."""
    if max_pixels < GRID_PX * GRID_PX:
        raise ValueError(f"max_pixels {max_pixels}: must be at least {GRID_PX * GRID_PX} "
                         f"(one {GRID_PX} x {GRID_PX} block), e.g. {DEFAULT_MAX_PIXELS}")
    padded_height, padded_width = padded_size(height, width)
    return padded_height * padded_width > max_pixels


def predict_tiled(predict_batch: PredictBatch, image, tile_px: int = DEFAULT_TILE_PX,
                  margin_px: int = EXACT_MARGIN_PX, tiles_per_batch: int = 1) -> np.ndarray:
    """H x W x 3 image (uint8 RGB, any size) -> H x W float32 foreground probabilities.

    The image is cut into overlapping tile_px x tile_px windows (`tile_windows`); each window's
    outer `margin_px` is thrown away. With FCN-8s and margin_px >= EXACT_MARGIN_PX the result is
    the whole-image prediction. `image` may be an np.memmap (or any array that reads on slicing):
    only the rows of the windows being predicted are read. `tiles_per_batch` windows go to
    `predict_batch` at a time; all windows have one shape.
    """
    check_tiling(tile_px, margin_px, tiles_per_batch)
    height, width = _image_size(image)
    windows = tile_windows(height, width, tile_px, margin_px)
    fg_probs = np.empty((height, width), dtype=np.float32)                     # H x W
    for batch in _batches(windows, tiles_per_batch):
        tiles = np.stack([read_padded_window(image, w.rows, w.cols) for w in batch])  # n x h x w x 3
        probabilities = np.asarray(predict_batch(tiles.astype(np.float32)), dtype=np.float32)
        if probabilities.shape != tiles.shape[:3]:
            raise ValueError(f"predict_batch returned shape {probabilities.shape} for tiles of shape "
                             f"{tiles.shape}; it must return (n, h, w) foreground probabilities")
        for window, window_probs in zip(batch, probabilities):                 # h x w each
            fg_probs[window.keep_rows, window.keep_cols] = window.kept_part(window_probs)
    return fg_probs


def check_tiling(tile_px: int, margin_px: int, tiles_per_batch: int = 1) -> None:
    """Raise ValueError unless the tile and margin are on the 32-px grid and leave a core."""
    if int(tile_px) != tile_px or tile_px < GRID_PX or tile_px % GRID_PX:
        raise ValueError(f"tile_px {tile_px}: must be a positive multiple of {GRID_PX} (FCN-8s' "
                         f"five pools), e.g. {DEFAULT_TILE_PX}")
    if int(margin_px) != margin_px or margin_px < 0 or margin_px % GRID_PX:
        raise ValueError(f"margin_px {margin_px}: must be 0 or a positive multiple of {GRID_PX}; "
                         f"{EXACT_MARGIN_PX} makes tiles equal a whole-image prediction")
    if tile_px - 2 * margin_px < GRID_PX:
        raise ValueError(f"margin_px {margin_px} is too large for tile_px {tile_px}: a margin on each "
                         f"side leaves {tile_px - 2 * margin_px} px of the tile to keep; use "
                         f"tile_px >= 2 * margin_px + {GRID_PX} = {2 * margin_px + GRID_PX}")
    if int(tiles_per_batch) != tiles_per_batch or tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch {tiles_per_batch}: must be a positive integer")


# --- Planning the windows ------------------------------------------------------------------------


def tile_windows(height: int, width: int, tile_px: int, margin_px: int) -> list[Window]:
    """The windows `predict_tiled` predicts for an H x W image, row by row.

    Their kept parts cover the image exactly once. Every window has the same shape
    (min(tile_px, H') x min(tile_px, W')) and starts on the 32-px grid; a kept part is at least
    `margin_px` away from each window edge that is not an edge of the padded image.
    """
    check_tiling(tile_px, margin_px)
    padded_height, padded_width = padded_size(height, width)
    return [Window(rows, cols, keep_rows, keep_cols)
            for rows, keep_rows in _axis_windows(padded_height, height, tile_px, margin_px)
            for cols, keep_cols in _axis_windows(padded_width, width, tile_px, margin_px)]


def _axis_windows(padded: int, size: int, tile_px: int, margin_px: int) -> list[tuple[slice, slice]]:
    """Along one axis: (window, kept part) pairs. Windows step by the core (tile - 2 * margin);
    the first keeps from 0, the last is moved back to end at `padded` and keeps up to `size`."""
    if padded <= tile_px:
        return [(slice(0, padded), slice(0, size))]
    core = tile_px - 2 * margin_px
    pairs, start, kept_to = [], 0, 0
    while True:
        is_last = start + tile_px >= padded
        keep_stop = size if is_last else start + tile_px - margin_px
        pairs.append((slice(start, start + tile_px), slice(kept_to, keep_stop)))
        if is_last:
            return pairs
        start, kept_to = min(start + core, padded - tile_px), keep_stop


def read_padded_window(image, rows: slice, cols: slice) -> np.ndarray:
    """padded[rows, cols] (h x w x 3), where `padded` is `image` mirrored across its bottom and
    right edges as np.pad(mode="reflect") does, without building `padded`: the rows and columns
    are mapped back into the image and read as one slice."""
    row_index = _reflected_indices(rows, image.shape[0])                      # h
    col_index = _reflected_indices(cols, image.shape[1])                      # w
    r0, c0 = row_index.min(), col_index.min()
    block = np.asarray(image[r0:row_index.max() + 1, c0:col_index.max() + 1])  # the rows read
    return block[np.ix_(row_index - r0, col_index - c0)]                      # h x w x 3


def _reflected_indices(window: slice, size: int) -> np.ndarray:
    """Which of an axis' `size` entries padded positions window.start..stop-1 show."""
    return np.pad(np.arange(size), (0, max(window.stop - size, 0)), mode="reflect")[window]


def _relative(inner: slice, outer: slice) -> slice:
    return slice(inner.start - outer.start, inner.stop - outer.start)


def _image_size(image) -> tuple[int, int]:
    if len(image.shape) != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"image of shape {tuple(image.shape)}: expected H x W x 3 RGB pixels")
    return int(image.shape[0]), int(image.shape[1])


def _batches(windows: list[Window], size: int) -> Iterator[list[Window]]:
    for start in range(0, len(windows), size):
        yield windows[start:start + size]
