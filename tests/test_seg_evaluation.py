"""evaluate-iou's numbers gathered image by image equal the whole-split metrics on joined pixels."""

import numpy as np
import pytest

from fcnlab.seg.arrays import save_ragged_stream, save_split_arrays
from fcnlab.seg.evaluation import EvaluationTally, fit_intensity_threshold_by_image
from fcnlab.seg.metrics import (baselines, fit_intensity_threshold, iou_vs_threshold, per_image_metrics, pixels,
                                predict_masks, segmentation_metrics)

SIZES = [(20, 30), (7, 9), (32, 32), (1, 5)]


def ragged_scenes(seed):
    """Images whose brightness says something about their masks, masks, and noisy probabilities."""
    rng = np.random.default_rng(seed)
    masks = [(rng.random(size) < 0.3).astype(np.uint8) for size in SIZES]
    images = [np.clip(rng.normal(90, 40, size + (3,)) + 60 * mask[..., None], 0, 255).astype(np.uint8)
              for size, mask in zip(SIZES, masks)]
    probs = [np.clip(0.6 * mask + rng.random(mask.shape) * 0.5, 0, 1).astype(np.float32) for mask in masks]
    return images, masks, probs


def test_the_intensity_rule_fitted_image_by_image_equals_the_one_fitted_on_joined_pixels():
    images, masks, _ = ragged_scenes(0)
    assert fit_intensity_threshold_by_image(images, masks) == fit_intensity_threshold(pixels(images), pixels(masks))


@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_a_tally_equals_the_metrics_on_the_joined_test_split(threshold):
    train_images, train_masks, _ = ragged_scenes(1)
    images, masks, probs = ragged_scenes(2)
    tally = EvaluationTally(threshold, 11, fit_intensity_threshold_by_image(train_images, train_masks))
    for image, mask, prob in zip(images, masks, probs):
        tally.add(image, mask, prob)
    predicted = [predict_masks(p, threshold) for p in probs]
    assert tally.model_metrics() == segmentation_metrics(pixels(masks), pixels(predicted))
    assert tally.baselines() == baselines(pixels(masks), pixels(images), pixels(train_images), pixels(train_masks))
    assert tally.threshold_curve() == iou_vs_threshold(pixels(masks), pixels(probs), 11)
    assert tally.rows == per_image_metrics(masks, predicted)


def test_predictions_written_one_at_a_time_are_the_bytes_of_one_save(tmp_path):
    _, masks, probs = ragged_scenes(3)
    (tmp_path / "all").mkdir()
    (tmp_path / "streamed").mkdir()
    save_split_arrays(tmp_path / "all", "test", fg_probs=probs)
    shapes = np.array([mask.shape for mask in masks])
    save_ragged_stream(tmp_path / "streamed", "test", "fg_probs", shapes, iter(probs), np.float32)
    for name in ("test_fg_probs.npy", "test_shapes.npy"):
        assert (tmp_path / "all" / name).read_bytes() == (tmp_path / "streamed" / name).read_bytes(), name
    with pytest.raises(ValueError, match="3 arrays written for 4 shapes"):
        save_ragged_stream(tmp_path / "streamed", "test", "fg_probs", shapes, iter(probs[:3]), np.float32)
