"""Joint augmentation: masks stay binary and on their image, draws are seeded, patches are fixed-size."""

import functools

import numpy as np
import pytest
import tensorflow as tf

from fcnlab.seg.augment import (NO_AUGMENTATION, Augmentation, augment_dataset, augment_pair, element_seed,
                                random_patch)

GEOMETRY_ONLY = Augmentation(brightness=0.0, contrast=0.0)


def blob_pair(height=24, width=24, seed=0, dtype=np.uint8):
    """A mask of random blobs, and an image whose channel 0 is that mask x 255 (so the two can be
    compared after any geometric change), channel 1 a row ramp, channel 2 noise."""
    rng = np.random.default_rng(seed)
    mask = (rng.random((height // 4 + 1, width // 4 + 1)) < 0.35).repeat(4, 0).repeat(4, 1)[:height, :width]
    mask = mask.astype(np.uint8)
    image = np.stack([mask * 255, np.tile(np.linspace(0, 255, height)[:, None], (1, width)),
                      rng.integers(0, 256, (height, width))], axis=-1)
    return image.astype(dtype), mask


def variable_size_dataset(sizes=((20, 30), (40, 17), (64, 64), (9, 12)), seed=0):
    def pairs():
        for i, (h, w) in enumerate(sizes):
            yield blob_pair(h, w, seed=seed + i)
    signature = (tf.TensorSpec((None, None, 3), tf.uint8), tf.TensorSpec((None, None), tf.uint8))
    return tf.data.Dataset.from_generator(pairs, output_signature=signature)


def as_bytes(dataset):
    return [(image.numpy().tobytes(), mask.numpy().tobytes()) for image, mask in dataset]


@functools.cache
def patch_bytes(seed=5, epoch=0, passes=1):
    """The 24-px patches of variable_size_dataset, as bytes (cached: each stream costs a trace)."""
    dataset = variable_size_dataset().repeat(passes)
    return as_bytes(augment_dataset(dataset, seed=seed, window=24, epoch=epoch))


def key(value):
    return element_seed(tf.constant([value, 0], tf.int64), 0)


# --- masks move with their image ----------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_flips_and_turns_move_mask_and_image_together_exactly(seed):
    image, mask = blob_pair()
    config = Augmentation(scale_range=None, brightness=0.0, contrast=0.0)
    out_image, out_mask = (t.numpy() for t in augment_pair(image, mask, key(seed), config))
    assert out_image.dtype == np.uint8 and out_mask.dtype == np.uint8
    np.testing.assert_array_equal(out_image[..., 0], out_mask * 255)
    assert sorted(out_image[..., 1].ravel()) == sorted(image[..., 1].ravel())          # same pixels, moved


@pytest.mark.parametrize("switch, expected", [
    ("horizontal_flip", lambda m: [m, m[:, ::-1]]),
    ("vertical_flip", lambda m: [m, m[::-1]]),
    ("rotate90", lambda m: [np.rot90(m, k) for k in range(4)]),
])
def test_each_symmetry_alone_gives_exactly_its_numpy_counterparts(switch, expected):
    image, mask = blob_pair(seed=3)
    config = Augmentation(**{**{name: False for name in ("horizontal_flip", "vertical_flip", "rotate90")},
                             switch: True}, scale_range=None, brightness=0.0, contrast=0.0)
    results = {augment_pair(image, mask, key(seed), config)[1].numpy().tobytes() for seed in range(24)}
    assert results == {np.ascontiguousarray(m).tobytes() for m in expected(mask)}


def test_the_draws_cover_every_flip_and_turn():
    image, mask = blob_pair(seed=1)
    config = Augmentation(scale_range=None, brightness=0.0, contrast=0.0)
    results = {augment_pair(image, mask, key(seed), config)[1].numpy().tobytes() for seed in range(60)}
    assert len(results) == 8                  # the 8 symmetries of a square (flips x turns)


@pytest.mark.parametrize("seed", range(4))
def test_zoomed_masks_stay_binary_and_on_their_objects(seed):
    image, mask = blob_pair(32, 32, seed=seed)
    config = Augmentation(scale_range=(0.6, 1.7), brightness=0.0, contrast=0.0)
    out_image, out_mask = (t.numpy() for t in augment_pair(image, mask, key(seed), config))
    assert set(np.unique(out_mask)) <= {0, 1}
    agree = np.mean((out_image[..., 0] > 127) == (out_mask == 1))    # bilinear edges may differ
    assert agree > 0.95
    assert not np.array_equal(out_mask, mask)


def test_colour_jitter_changes_the_image_only():
    image, mask = blob_pair(seed=2)
    config = Augmentation(horizontal_flip=False, vertical_flip=False, rotate90=False, scale_range=None,
                          brightness=0.2, contrast=0.3)
    out_image, out_mask = (t.numpy() for t in augment_pair(image, mask, key(3), config))
    np.testing.assert_array_equal(out_mask, mask)
    assert not np.array_equal(out_image, image)
    assert out_image.dtype == np.uint8


def test_float_images_stay_float_and_in_range():
    image, mask = blob_pair(dtype=np.float32)
    out_image, out_mask = augment_pair(image, mask, key(4), Augmentation(brightness=0.5, contrast=0.5))
    assert out_image.dtype == tf.float32 and out_mask.dtype == tf.uint8
    assert 0.0 <= float(tf.reduce_min(out_image)) and float(tf.reduce_max(out_image)) <= 255.0


def test_no_augmentation_returns_the_pair_unchanged():
    image, mask = blob_pair(20, 30)
    out_image, out_mask = augment_pair(image, mask, key(0), NO_AUGMENTATION)
    np.testing.assert_array_equal(out_image.numpy(), image)
    np.testing.assert_array_equal(out_mask.numpy(), mask)


def test_a_non_square_image_keeps_its_shape_and_turns_only_by_180_degrees():
    image, mask = blob_pair(20, 30)
    config = Augmentation(horizontal_flip=False, vertical_flip=False, scale_range=None, brightness=0.0,
                          contrast=0.0)
    seen = set()
    for seed in range(12):
        out_image, out_mask = (t.numpy() for t in augment_pair(image, mask, key(seed), config))
        assert out_image.shape == (20, 30, 3) and out_mask.shape == (20, 30)
        np.testing.assert_array_equal(out_image[..., 0], out_mask * 255)
        seen.add(out_mask.tobytes())
    assert seen == {mask.tobytes(), mask[::-1, ::-1].tobytes()}


# --- patches ------------------------------------------------------------------------------------


def test_random_patch_is_a_window_of_the_image():
    image, mask = blob_pair(40, 50)
    patch_image, patch_mask = (t.numpy() for t in random_patch(image, mask, 16, key(7)))
    assert patch_image.shape == (16, 16, 3) and patch_mask.shape == (16, 16)
    hits = [(y, x) for y in range(40 - 15) for x in range(50 - 15)
            if np.array_equal(image[y:y + 16, x:x + 16], patch_image)]
    assert len(hits) == 1
    y, x = hits[0]
    np.testing.assert_array_equal(mask[y:y + 16, x:x + 16], patch_mask)


def test_random_patch_zero_pads_a_small_image_and_pads_its_mask_with_background():
    image, mask = blob_pair(10, 12)
    image = image.copy()
    image[..., 1] = 200                                   # no zeros of its own in channel 1
    patch_image, patch_mask = (t.numpy() for t in random_patch(image, mask, 16, key(8)))
    inside = patch_image[..., 1] == 200
    assert inside.sum() == 10 * 12
    ys, xs = np.nonzero(inside)
    y, x = ys.min(), xs.min()
    np.testing.assert_array_equal(patch_image[y:y + 10, x:x + 12], image)
    np.testing.assert_array_equal(patch_mask[y:y + 10, x:x + 12], mask)
    assert (patch_image[~inside] == 0).all() and (patch_mask[~inside] == 0).all()


def test_dataset_of_variable_sizes_gives_fixed_size_patches_that_batch():
    dataset = augment_dataset(variable_size_dataset(), seed=3, window=32).batch(2)
    assert dataset.element_spec[0].shape.as_list() == [None, 32, 32, 3]
    batches = [(images.numpy(), masks.numpy()) for images, masks in dataset]
    assert [(images.shape, masks.shape) for images, masks in batches] == [((2, 32, 32, 3), (2, 32, 32))] * 2
    for images, masks in batches:
        assert set(np.unique(masks)) <= {0, 1}
        assert np.mean((images[..., 0] > 127) == (masks == 1)) > 0.9        # the jitter is mild


# --- seeding ------------------------------------------------------------------------------------


def test_same_seed_same_bytes_whatever_the_global_seed():
    tf.random.set_seed(1)
    first = as_bytes(augment_dataset(variable_size_dataset(), seed=5, window=24))
    tf.random.set_seed(2)
    assert first == patch_bytes(seed=5)
    assert len(set(first)) == 4


def test_other_seed_or_epoch_gives_other_augmentations():
    assert all(a != b for a, b in zip(patch_bytes(seed=5), patch_bytes(seed=6)))
    assert all(a != b for a, b in zip(patch_bytes(seed=5), patch_bytes(seed=5, epoch=1)))


def test_a_repeated_stream_draws_anew_each_pass():
    stream = patch_bytes(seed=5, passes=2)
    assert stream[:4] == patch_bytes(seed=5)
    assert all(a != b for a, b in zip(stream[:4], stream[4:]))


# --- refusals -----------------------------------------------------------------------------------


def test_bad_inputs_are_refused():
    image, mask = blob_pair()
    with pytest.raises(ValueError, match="differ in height or width"):
        augment_pair(image, mask[:-1], key(0))
    with pytest.raises(ValueError, match="uint8 mask"):
        augment_pair(image, mask.astype(np.float32), key(0))
    with pytest.raises(ValueError, match="window"):
        random_patch(image, mask, 0, key(0))
    with pytest.raises(ValueError, match="scale_range"):
        Augmentation(scale_range=(1.2, 0.8))


def test_an_integer_seed_is_the_key_seed_zero():
    image, mask = blob_pair(40, 50)
    by_int = random_patch(image, mask, 16, 7)[0].numpy()
    np.testing.assert_array_equal(by_int, random_patch(image, mask, 16, tf.constant([7, 0]))[0].numpy())
    assert not np.array_equal(by_int, random_patch(image, mask, 16, 8)[0].numpy())
