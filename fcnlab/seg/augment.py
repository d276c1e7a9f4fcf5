"""Joint image + mask augmentation inside a tf.data stream, seeded so reruns give the same bytes.

Every geometric change moves the image and its mask together; colour changes touch the image
only. One image/mask pair goes through, in order:

    image H x W x C, mask H x W
      │ random window: `window` = (H', W') (or the image's own size), zoomed by a random
      │   scale s: a (side / s)-pixel window is cut at a random place (zero-padded where the
      │   image is too small) and resized back to the side: image bilinear, mask nearest
      │ horizontal flip, vertical flip         (each with probability 1/2)
      │ rotation by k x 90 degrees             (k uniform in 0..3; see "Non-square" below)
      ▼ brightness and contrast jitter         (image only)
    image H' x W' x C (or H x W x C), mask the same size: dtypes kept (uint8 or float32 image,
    uint8 mask), mask values still only those of the input (nearest resize, zero padding)

Randomness. Only TensorFlow's stateless random ops are used, keyed by (seed, epoch, element
index): the same three give the same bytes on every run, whatever the global seed, thread count
or `num_parallel_calls`. `augment_dataset` numbers the elements itself, so a stream that is
`.repeat()`-ed before it gets new draws every pass; one rebuilt per epoch passes `epoch`.
Shuffling the input (seeded) is the caller's business; it happens before the numbering.

Padding. Where the window is larger than the image (an image smaller than the patch, or a
zoom-out), the image is padded with zeros and the mask with background (0). Zero padding, not
reflection, because the mask is padded with background: a mirrored copy of a foreground object
labelled background would teach the network that objects are background, whereas a flat black
border really contains nothing. The image is placed at a random offset inside the window.

Non-square. A 90-degree turn swaps height and width, which would change the output's shape;
for a non-square output k is drawn from {0, 2} (0 or 180 degrees) instead. Square windows get
all four.

Image values are on 0..255 (what fcn8s_vgg16 reads), uint8 or float32: brightness moves them by
up to `brightness` x 255, contrast scales each channel about its mean by a factor in
[1 - contrast, 1 + contrast]; the result is clipped to 0..255 (and rounded back for uint8).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Which operations run, and how strongly. Switch one off with False / None / 0."""

    horizontal_flip: bool = True
    vertical_flip: bool = True
    rotate90: bool = True
    scale_range: tuple[float, float] | None = (0.8, 1.25)   # zoom factor s, drawn log-uniformly; >1 zooms in
    brightness: float = 0.1                                # max shift, as a fraction of 255
    contrast: float = 0.1                                  # max relative change of contrast

    def __post_init__(self):
        if self.scale_range is not None:
            low, high = self.scale_range
            if not (0 < low <= high and math.isfinite(high)):
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, "
                                 f"got {self.scale_range!r}")
        if not 0 <= self.brightness <= 1:
            raise ValueError(f"brightness must be in [0, 1] (a fraction of 255), got {self.brightness!r}")
        if not 0 <= self.contrast < 1:
            raise ValueError(f"contrast must be in [0, 1), got {self.contrast!r}")


NO_AUGMENTATION = Augmentation(horizontal_flip=False, vertical_flip=False, rotate90=False,
                               scale_range=None, brightness=0.0, contrast=0.0)


def augment_dataset(dataset: tf.data.Dataset, seed: int, config: Augmentation = Augmentation(),
                    window: int | tuple[int, int] | None = None, epoch: int = 0) -> tf.data.Dataset:
    """(image, mask) pairs -> augmented pairs, element i keyed by (seed, epoch, i).

    With `window` ((H', W'), or S for S x S) every output is H' x W' whatever the input's size
    (a generator of images of different sizes is fine), so the result can be `.batch()`-ed.
    Without it each output keeps its input's size.
    """
    _check_seed(seed)
    if window is not None:
        window = _checked_window(window)
    base = tf.constant([int(seed), int(epoch)], tf.int64)

    def augment_element(index, pair):
        image, mask = pair
        return augment_pair(image, mask, element_seed(base, index), config, window)

    return dataset.enumerate().map(augment_element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def element_seed(base, index):
    """The stateless-op key of element `index` under `base` = [seed, epoch]: shape [2] int64."""
    return tf.random.experimental.stateless_fold_in(tf.cast(base, tf.int64), tf.cast(index, tf.int64))


def augment_pair(image, mask, seed, config: Augmentation = Augmentation(),
                 window: int | tuple[int, int] | None = None):
    """One image (H x W x C) and mask (H x W) through the steps in the module docstring.

    `seed` is an integer or a stateless key (shape [2] integers, e.g. `element_seed`'s). The
    output is `window` ((H', W'), or S for S x S), or H x W.
    """
    image, mask = _checked_pair(image, mask)
    if window is not None:
        window = _checked_window(window)
    window_key, symmetry_key, jitter_key = _split(_as_key(seed), 3)
    if window is None:
        out_h, out_w = tf.shape(image)[0], tf.shape(image)[1]
    else:
        out_h, out_w = tf.constant(window[0]), tf.constant(window[1])
    if config.scale_range is None:
        image, mask = _window(image, mask, out_h, out_w, window_key)
    else:
        image, mask = _zoom(image, mask, out_h, out_w, config.scale_range, window_key)
    image, mask = _symmetry(image, mask, config, symmetry_key)
    image = _jitter(image, config.brightness, config.contrast, jitter_key)
    if window is not None:
        image = tf.ensure_shape(image, (*window, image.shape[-1]))
        mask = tf.ensure_shape(mask, window)
    return image, mask


def random_patch(image, mask, window: int | tuple[int, int], seed):
    """A random `window` ((H', W'), or S for S x S) of image and mask (zero / background padding
    where the image is smaller, the image at a random place in it). `seed` as for `augment_pair`."""
    height, width = _checked_window(window)
    image, mask = _checked_pair(image, mask)
    image, mask = _window(image, mask, tf.constant(height), tf.constant(width), _as_key(seed))
    return tf.ensure_shape(image, (height, width, image.shape[-1])), tf.ensure_shape(mask, (height, width))


# --- geometry -----------------------------------------------------------------------------------


def _window(image, mask, height, width, seed):
    """Crop (or zero-pad) image and mask to height x width at one random offset per axis."""
    y_key, x_key = _split(seed, 2)
    image_h, image_w = tf.shape(image)[0], tf.shape(image)[1]
    y = _uniform_int(y_key, tf.abs(image_h - height))              # crop start, or padding above
    x = _uniform_int(x_key, tf.abs(image_w - width))
    pad_top = tf.where(image_h < height, y, 0)
    pad_left = tf.where(image_w < width, x, 0)
    pad_h, pad_w = tf.maximum(height - image_h, 0), tf.maximum(width - image_w, 0)
    padding = [[pad_top, pad_h - pad_top], [pad_left, pad_w - pad_left]]
    image = tf.pad(image, padding + [[0, 0]])                      # zeros
    mask = tf.pad(mask, padding)                                   # background
    top, left = y - pad_top, x - pad_left                          # 0 on a padded axis
    return image[top:top + height, left:left + width], mask[top:top + height, left:left + width]


def _zoom(image, mask, out_h, out_w, scale_range, seed):
    """Cut an (out / s)-sized window and resize it to out_h x out_w: s > 1 zooms in."""
    scale_key, window_key = _split(seed, 2)
    low, high = (math.log(v) for v in scale_range)
    scale = tf.exp(tf.random.stateless_uniform([], scale_key, low, high) if high > low else tf.constant(low))
    window_h = tf.maximum(1, tf.cast(tf.round(tf.cast(out_h, tf.float32) / scale), tf.int32))
    window_w = tf.maximum(1, tf.cast(tf.round(tf.cast(out_w, tf.float32) / scale), tf.int32))
    image, mask = _window(image, mask, window_h, window_w, window_key)
    size = tf.stack([out_h, out_w])
    resized = tf.image.resize(tf.cast(image, tf.float32), size, method="bilinear")   # out_h x out_w x C
    mask = tf.image.resize(mask[..., None], size, method="nearest")[..., 0]          # keeps uint8
    return _as_dtype(resized, image.dtype), mask


def _symmetry(image, mask, config: Augmentation, seed):
    """Random flips, then a turn by k x 90 degrees, done together as one optional transpose
    followed by optional row and column reversals (at most three copies of the image).

    A turn by k is: k = 1 transpose, reverse rows; k = 2 reverse both; k = 3 transpose, reverse
    columns. A flip made before the transpose reverses the other axis after it.
    """
    horizontal_key, vertical_key, turn_key = _split(seed, 3)
    reverse_rows = tf.constant(config.vertical_flip) & _coin(vertical_key)
    reverse_cols = tf.constant(config.horizontal_flip) & _coin(horizontal_key)
    if config.rotate90:
        turns = _uniform_int(turn_key, 3)
        square = tf.equal(tf.shape(image)[0], tf.shape(image)[1])
        turns = tf.where(square, turns, 2 * (turns % 2))            # 0 or 180 degrees if not square
        transpose = tf.equal(turns % 2, 1)
        reverse_rows, reverse_cols = (tf.where(transpose, reverse_cols, reverse_rows),
                                      tf.where(transpose, reverse_rows, reverse_cols))
        reverse_rows ^= tf.equal(turns, 1) | tf.equal(turns, 2)
        reverse_cols ^= tf.equal(turns, 2) | tf.equal(turns, 3)
        shapes = image.shape, mask.shape
        image = tf.cond(transpose, lambda: tf.transpose(image, [1, 0, 2]), lambda: image)
        mask = tf.cond(transpose, lambda: tf.transpose(mask), lambda: mask)
        image.set_shape(shapes[0])                                 # the shape never changes
        mask.set_shape(shapes[1])
    image = tf.cond(reverse_rows, lambda: tf.reverse(image, [0]), lambda: image)
    mask = tf.cond(reverse_rows, lambda: tf.reverse(mask, [0]), lambda: mask)
    image = tf.cond(reverse_cols, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(reverse_cols, lambda: tf.reverse(mask, [1]), lambda: mask)
    return image, mask


# --- colour -------------------------------------------------------------------------------------


def _jitter(image, brightness: float, contrast: float, seed):
    if brightness == 0 and contrast == 0:
        return image
    brightness_key, contrast_key = _split(seed, 2)
    x = tf.cast(image, tf.float32)                                 # H x W x C, 0..255
    if contrast > 0:
        factor = tf.random.stateless_uniform([], contrast_key, 1.0 - contrast, 1.0 + contrast)
        mean = tf.reduce_mean(x, axis=[0, 1], keepdims=True)       # 1 x 1 x C
        x = (x - mean) * factor + mean
    if brightness > 0:
        x = x + 255.0 * tf.random.stateless_uniform([], brightness_key, -brightness, brightness)
    return _as_dtype(tf.clip_by_value(x, 0.0, 255.0), image.dtype)


# --- helpers ------------------------------------------------------------------------------------


def _as_dtype(values, dtype):
    """float32 values back to the image's dtype: rounded for integer images."""
    if dtype.is_integer:
        return tf.saturate_cast(tf.round(values), dtype)
    return tf.cast(values, dtype)


def _as_key(seed):
    """An integer seed s becomes the key [s, 0]; a key passes through."""
    if _is_integer(seed):
        return tf.constant([int(seed), 0], tf.int64)
    return seed


def _split(seed, count: int):
    return tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), count))


def _coin(seed):
    """True with probability 1/2."""
    return tf.random.stateless_uniform([], seed) < 0.5


def _uniform_int(seed, upper):
    """An integer drawn uniformly from 0..upper (inclusive)."""
    return tf.random.stateless_uniform([], seed, minval=0, maxval=tf.cast(upper, tf.int32) + 1,
                                       dtype=tf.int32)


def _checked_pair(image, mask):
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    if image.shape.rank != 3 or mask.shape.rank != 2:
        raise ValueError(f"augmentation needs an H x W x C image and an H x W mask, got shapes "
                         f"{image.shape} and {mask.shape}")
    if not image.shape[:2].is_compatible_with(mask.shape):
        raise ValueError(f"image {image.shape} and mask {mask.shape} differ in height or width")
    if image.dtype not in (tf.uint8, tf.float32) or mask.dtype != tf.uint8:
        raise ValueError(f"augmentation needs a uint8 or float32 image and a uint8 mask, got "
                         f"{image.dtype.name} and {mask.dtype.name}")
    tf.debugging.assert_equal(tf.shape(image)[:2], tf.shape(mask),
                              message="image and mask differ in height or width")
    return image, mask


def _checked_window(window) -> tuple[int, int]:
    """(H', W') from an integer S (S x S) or a pair of positive integers."""
    sides = (window, window) if _is_integer(window) else tuple(window) if isinstance(window, (tuple, list)) else ()
    if len(sides) != 2 or not all(_is_integer(side) and side >= 1 for side in sides):
        raise ValueError(f"window must be a positive integer or (height, width) of them, got {window!r}")
    return int(sides[0]), int(sides[1])


def _check_seed(seed) -> None:
    if not _is_integer(seed):
        raise ValueError(f"seed must be an integer, got {seed!r}")


def _is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
