"""Binary segmentation metrics (fcnlab.seg.metrics), checked against keras.metrics.IoU and an
independent confusion matrix built with np.bincount."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fcnlab.seg import metrics as sm


def random_masks(shape, foreground_fraction=0.3, seed=0) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < foreground_fraction).astype(np.uint8)


def bincount_confusion(true_masks, pred_masks) -> np.ndarray:
    """Rows true class, columns predicted class, counted independently of fcnlab."""
    codes = 2 * np.asarray(true_masks, dtype=np.int64).ravel() + np.asarray(pred_masks, dtype=np.int64).ravel()
    return np.bincount(codes, minlength=4).reshape(2, 2)


def keras_iou(true_masks, pred_masks, class_ids) -> float:
    metric = keras.metrics.IoU(num_classes=2, target_class_ids=class_ids)
    metric.update_state(np.ravel(true_masks), np.ravel(pred_masks))
    return float(metric.result())


SHAPE = (3, 16, 16)
CASES = {
    "random": (random_masks(SHAPE, 0.3, seed=1), random_masks(SHAPE, 0.4, seed=2)),
    "empty_truth_foreground": (np.zeros(SHAPE, np.uint8), random_masks(SHAPE, 0.2, seed=3)),
    "empty_prediction": (random_masks(SHAPE, 0.3, seed=4), np.zeros(SHAPE, np.uint8)),
    "all_foreground_prediction": (random_masks(SHAPE, 0.3, seed=5), np.ones(SHAPE, np.uint8)),
    "all_foreground_both": (np.ones(SHAPE, np.uint8), np.ones(SHAPE, np.uint8)),
    "all_background_both": (np.zeros(SHAPE, np.uint8), np.zeros(SHAPE, np.uint8)),
}


# --- Against Keras and an independent count ----------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_confusion_matrix_matches_bincount(case):
    true_masks, pred_masks = CASES[case]
    np.testing.assert_array_equal(sm.confusion_matrix(true_masks, pred_masks),
                                  bincount_confusion(true_masks, pred_masks))


@pytest.mark.parametrize("case", CASES)
def test_mean_iou_matches_keras_iou(case):
    true_masks, pred_masks = CASES[case]
    metrics = sm.segmentation_metrics(true_masks, pred_masks)
    assert metrics["mean_iou"] == pytest.approx(keras_iou(true_masks, pred_masks, [0, 1]), abs=1e-6)


@pytest.mark.parametrize("case", CASES)
def test_iou_per_class_matches_keras_iou_where_the_class_occurs(case):
    true_masks, pred_masks = CASES[case]
    iou = sm.segmentation_metrics(true_masks, pred_masks)["iou"]
    for class_id, name in enumerate(sm.CLASS_NAMES):
        occurs = (np.asarray(true_masks) == class_id).any() or (np.asarray(pred_masks) == class_id).any()
        if occurs:
            assert iou[name] == pytest.approx(keras_iou(true_masks, pred_masks, [class_id]), abs=1e-6)
        else:                                    # keras: 0 here, and left out of its mean
            assert iou[name] is None


def test_all_metrics_from_a_known_confusion():
    true_masks = np.array([[1, 1, 1, 0, 0, 0, 0, 0, 0, 0]], np.uint8)   # 3 foreground
    pred_masks = np.array([[1, 1, 0, 1, 0, 0, 0, 0, 0, 0]], np.uint8)   # 2 hits, 1 false alarm
    assert sm.segmentation_metrics(true_masks, pred_masks) == {
        "mean_iou": round((2 / 4 + 6 / 8) / 2, 6),
        "iou": {"background": 0.75, "foreground": 0.5},
        "dice": round(4 / 6, 6),
        "precision": round(2 / 3, 6),
        "recall": round(2 / 3, 6),
        "pixel_accuracy": 0.8,
        "confusion": {"tp": 2, "fp": 1, "fn": 1, "tn": 6},
    }


@settings(max_examples=60, deadline=None, database=None)
@given(st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)).flatmap(
    lambda shape: st.tuples(arrays(np.uint8, shape, elements=st.integers(0, 1)),
                            arrays(np.uint8, shape, elements=st.integers(0, 1)))))
def test_metrics_agree_with_their_definitions_on_any_masks(masks):
    true_masks, pred_masks = masks
    (tn, fp), (fn, tp) = bincount_confusion(true_masks, pred_masks)
    metrics = sm.segmentation_metrics(true_masks, pred_masks)
    assert metrics["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert metrics["pixel_accuracy"] == pytest.approx((tp + tn) / true_masks.size, abs=1e-6)
    fg, bg = metrics["iou"]["foreground"], metrics["iou"]["background"]
    assert fg == (None if tp + fp + fn == 0 else pytest.approx(tp / (tp + fp + fn), abs=1e-6))
    assert bg == (None if tn + fp + fn == 0 else pytest.approx(tn / (tn + fp + fn), abs=1e-6))
    assert metrics["mean_iou"] == pytest.approx(np.mean([v for v in (fg, bg) if v is not None]), abs=1e-6)
    if metrics["dice"] is not None:              # Dice >= IoU, and Dice = 2 IoU / (1 + IoU)
        assert metrics["dice"] == pytest.approx(2 * fg / (1 + fg), abs=1e-5)
    # swapping the roles of the classes swaps their IoUs
    swapped = sm.segmentation_metrics(1 - true_masks, 1 - pred_masks)
    assert swapped["iou"] == {"background": fg, "foreground": bg}
    json.dumps(metrics, allow_nan=False)


# --- Empty-class conventions --------------------------------------------------------------------


def test_no_predicted_foreground_leaves_precision_undefined():
    metrics = sm.segmentation_metrics(*CASES["empty_prediction"])
    assert metrics["precision"] is None
    assert metrics["recall"] == 0.0 and metrics["dice"] == 0.0 and metrics["iou"]["foreground"] == 0.0


def test_no_foreground_anywhere_leaves_foreground_metrics_undefined_and_out_of_the_mean():
    metrics = sm.segmentation_metrics(*CASES["all_background_both"])
    assert metrics["iou"] == {"background": 1.0, "foreground": None}
    assert metrics["mean_iou"] == 1.0
    assert metrics["dice"] is None and metrics["precision"] is None and metrics["recall"] is None


def test_metrics_are_plain_json_numbers():
    metrics = sm.segmentation_metrics(*CASES["random"])
    json.dumps(metrics, allow_nan=False)
    assert type(metrics["mean_iou"]) is float and type(metrics["confusion"]["tp"]) is int


def test_bool_and_float_masks_are_accepted():
    true_masks, pred_masks = CASES["random"]
    expected = sm.segmentation_metrics(true_masks, pred_masks)
    assert sm.segmentation_metrics(true_masks.astype(bool), pred_masks.astype(np.float32)) == expected


@pytest.mark.parametrize("bad_pred", [np.full(SHAPE, 2, np.uint8), np.full(SHAPE, 0.5), np.zeros((3, 16, 8))])
def test_masks_that_are_not_0_1_or_do_not_match_are_refused(bad_pred):
    with pytest.raises(ValueError, match="0 and 1|must match"):
        sm.segmentation_metrics(CASES["random"][0], bad_pred)


# --- Per image ----------------------------------------------------------------------------------


def test_per_image_metrics_are_each_images_own_iou_and_dice():
    true_masks, pred_masks = CASES["random"]
    rows = sm.per_image_metrics(true_masks, pred_masks)
    assert [row["index"] for row in rows] == [0, 1, 2]
    for row, truth, prediction in zip(rows, true_masks, pred_masks):
        alone = sm.segmentation_metrics(truth, prediction)
        assert row["iou"] == alone["iou"]["foreground"] and row["dice"] == alone["dice"]
        assert row["foreground_fraction"] == pytest.approx(truth.mean(), abs=1e-6)


def test_per_image_empty_truth_and_prediction_score_one_and_one_sided_zero():
    true_masks = np.zeros((3, 4, 4), np.uint8)
    pred_masks = np.zeros((3, 4, 4), np.uint8)
    true_masks[1, 0, 0] = 1                       # image 1: missed its only foreground pixel
    pred_masks[2, 0, 0] = 1                       # image 2: a false alarm on an empty image
    rows = sm.per_image_metrics(true_masks, pred_masks)
    assert [(row["iou"], row["dice"]) for row in rows] == [(1.0, 1.0), (0.0, 0.0), (0.0, 0.0)]
    assert [row["foreground_fraction"] for row in rows] == [0.0, 0.0625, 0.0]


def test_per_image_metrics_take_lists_of_masks_of_different_sizes():
    """Images at their own resolution: one row per image, each scored on its own pixels, and the
    pixels of all of them together give the whole-set metrics."""
    sizes = [(16, 24), (9, 5), (32, 32)]
    truth = [random_masks(size, 0.3, seed=20 + i) for i, size in enumerate(sizes)]
    predicted = [random_masks(size, 0.4, seed=30 + i) for i, size in enumerate(sizes)]
    rows = sm.per_image_metrics(truth, predicted)
    assert [row["index"] for row in rows] == [0, 1, 2]
    for row, t, p in zip(rows, truth, predicted):
        alone = sm.segmentation_metrics(t, p)
        assert row["iou"] == alone["iou"]["foreground"] and row["dice"] == alone["dice"]
    everything = sm.pixels(truth)
    assert everything.shape == (16 * 24 + 9 * 5 + 32 * 32,)
    np.testing.assert_array_equal(sm.confusion_matrix(everything, sm.pixels(predicted)),
                                  bincount_confusion(np.concatenate([t.ravel() for t in truth]),
                                                     np.concatenate([p.ravel() for p in predicted])))
    with pytest.raises(ValueError, match="must match"):
        sm.per_image_metrics(truth, predicted[:2] + [predicted[2][:16]])
    with pytest.raises(ValueError, match="3 true masks but 2"):
        sm.per_image_metrics(truth, predicted[:2])


# --- IoU against the threshold ------------------------------------------------------------------


def test_iou_vs_threshold_runs_from_all_foreground_to_all_background():
    true_masks = random_masks(SHAPE, 0.3, seed=6)
    fg_probs = np.random.default_rng(7).uniform(1e-3, 1.0, SHAPE).astype(np.float32)
    rows = sm.iou_vs_threshold(true_masks, fg_probs, n_thresholds=11)
    assert [row["threshold"] for row in rows] == [round(t, 6) for t in np.linspace(0, 1, 11)]
    everything = sm.segmentation_metrics(true_masks, np.ones(SHAPE, np.uint8))
    nothing = sm.segmentation_metrics(true_masks, np.zeros(SHAPE, np.uint8))
    assert (rows[0]["mean_iou"], rows[0]["foreground_iou"]) == (everything["mean_iou"], everything["iou"]["foreground"])
    assert (rows[-1]["mean_iou"], rows[-1]["foreground_iou"]) == (nothing["mean_iou"], 0.0)


def test_iou_vs_threshold_at_one_half_equals_the_headline_metric():
    true_masks = random_masks(SHAPE, 0.3, seed=8)
    fg_probs = np.clip(true_masks * 0.4 + np.random.default_rng(9).random(SHAPE) * 0.6, 0, 1)
    fg_probs[0, 0, :4] = 0.5                      # ties at the threshold are background
    row = next(row for row in sm.iou_vs_threshold(true_masks, fg_probs, 21) if row["threshold"] == 0.5)
    headline = sm.segmentation_metrics(true_masks, sm.predict_masks(fg_probs, 0.5))
    assert (row["mean_iou"], row["foreground_iou"]) == (headline["mean_iou"], headline["iou"]["foreground"])


def test_predict_masks_is_strictly_above_the_threshold():
    np.testing.assert_array_equal(sm.predict_masks(np.array([0.0, 0.5, 0.50001, 1.0]), 0.5), [0, 0, 1, 1])


# --- Baselines ----------------------------------------------------------------------------------


def bright_square_images(n, size=32, seed=0, dark_square=False):
    """Grey noise with a square of foreground that is brighter (or darker) than the rest."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        top, left = rng.integers(0, size // 2, 2)
        masks[i, top:top + size // 2, left:left + size // 2] = 1
    level = np.where(masks == 1, 60 if dark_square else 190, 120)
    images = np.clip(level[..., None] + rng.normal(0, 15, (n, size, size, 3)), 0, 255).astype(np.uint8)
    return images, masks


def test_baselines_all_background_and_all_foreground():
    images, masks = bright_square_images(4)
    result = sm.baselines(masks, images, images, masks)
    fraction = masks.mean()
    assert result["all_background"]["iou"]["foreground"] == 0.0
    assert result["all_background"]["pixel_accuracy"] == pytest.approx(1 - fraction, abs=1e-6)
    assert result["all_foreground"]["iou"]["foreground"] == pytest.approx(fraction, abs=1e-6)
    assert result["all_foreground"]["recall"] == 1.0


@pytest.mark.parametrize("dark_square", [False, True])
def test_intensity_threshold_finds_the_square_and_its_polarity(dark_square):
    train_images, train_masks = bright_square_images(6, seed=1, dark_square=dark_square)
    test_images, test_masks = bright_square_images(3, seed=2, dark_square=dark_square)
    result = sm.baselines(test_masks, test_images, train_images, train_masks)["intensity_threshold"]
    assert result["foreground_is_bright"] is (not dark_square)
    assert (60 if dark_square else 120) < result["threshold"] < (120 if dark_square else 190)
    assert result["mean_iou"] > 0.9
    json.dumps(result, allow_nan=False)


def test_otsu_threshold_maximises_the_between_class_variance():
    values = np.random.default_rng(3).choice([30.0, 100.0, 210.0], 500) + np.random.default_rng(4).normal(0, 10, 500)
    threshold = sm.otsu_threshold(values)

    def between_class_variance(cut):
        lower, upper = values[values < cut], values[values >= cut]
        return len(lower) * len(upper) * (lower.mean() - upper.mean()) ** 2 if len(lower) and len(upper) else 0

    best = max(between_class_variance(cut) for cut in np.linspace(values.min(), values.max(), 257)[1:-1])
    assert between_class_variance(threshold) == pytest.approx(best, rel=1e-3)   # bins vs exact values


def test_grayscale_uses_bt601_luma():
    pixel = np.array([[[[200, 100, 50]]]], np.uint8)
    assert sm.grayscale(pixel)[0, 0, 0] == pytest.approx(0.299 * 200 + 0.587 * 100 + 0.114 * 50, rel=1e-6)
