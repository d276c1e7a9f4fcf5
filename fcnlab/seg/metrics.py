"""Binary segmentation metrics on NumPy arrays: confusion counts, IoU, Dice, curves, baselines.

Masks are arrays of 0/1 (uint8, bool, or 0./1. floats), N x H x W or the pixels of images of any
sizes one after another (`pixels`); foreground probabilities are floats of the same shape (the
FCN's softmax channel 1). A pixel is predicted foreground when its
probability is strictly above the threshold, as in the seed (`test_segmented[..., 1] > 0.5`);
`predict_masks` is the one place that rule lives.

Conventions for empty classes (the only places where a metric could divide by zero):

- Over a whole set (`segmentation_metrics`, `iou_vs_threshold`): a ratio whose denominator is
  zero is undefined and reported as None (JSON null), never as a made-up number. So a class that
  is absent from both truth and prediction has IoU None and is left out of `mean_iou`, exactly as
  `keras.metrics.IoU` averages only over classes with a non-zero denominator; precision is None
  when nothing was predicted foreground, recall is None when the truth has no foreground, and
  Dice is None when neither has any.
- Per image (`per_image_metrics`): an image whose truth and prediction both have no foreground
  scores IoU 1 and Dice 1 (perfect agreement: nothing to find, nothing claimed), so every image
  has a number and best/worst rankings and means stay defined. One side empty and the other not
  gives 0, as the formulas do anyway.

Every returned number is a plain Python int, float (rounded to 6 decimals) or None, so results
go straight into JSON metrics files.
"""

from __future__ import annotations

import numpy as np

DECIMALS = 6
CLASS_NAMES = ("background", "foreground")
# ITU-R BT.601 luma weights for R, G, B (what Pillow's convert("L") uses).
LUMA_WEIGHTS_RGB = (0.299, 0.587, 0.114)


def predict_masks(fg_probs, threshold: float = 0.5) -> np.ndarray:
    """Foreground where the probability is strictly above `threshold`: uint8 masks of 0/1."""
    return (np.asarray(fg_probs) > threshold).astype(np.uint8)


# --- Confusion counts ---------------------------------------------------------------------------


def confusion_counts(true_masks, pred_masks) -> dict[str, int]:
    """Pixel counts over all images: tp, fp, fn, tn (foreground is the positive class)."""
    true_fg, pred_fg = _check_pair(true_masks, pred_masks)
    return _counts(true_fg, pred_fg)


def confusion_matrix(true_masks, pred_masks) -> np.ndarray:
    """The same counts as a 2x2 matrix: rows are the true class, columns the predicted class
    (0 background, 1 foreground), the layout of keras.metrics.IoU and sklearn."""
    c = confusion_counts(true_masks, pred_masks)
    return np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=np.int64)


def _counts(true_fg: np.ndarray, pred_fg: np.ndarray) -> dict[str, int]:
    tp = int(np.count_nonzero(true_fg & pred_fg))
    fp = int(np.count_nonzero(pred_fg)) - tp
    fn = int(np.count_nonzero(true_fg)) - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": int(true_fg.size) - tp - fp - fn}


# --- Whole-set metrics --------------------------------------------------------------------------


def segmentation_metrics(true_masks, pred_masks) -> dict:
    """IoU per class and their mean, foreground Dice/precision/recall, pixel accuracy, counts.

    {"mean_iou", "iou": {"background", "foreground"}, "dice", "precision", "recall",
     "pixel_accuracy", "confusion": {"tp", "fp", "fn", "tn"}}; see the module docstring for None.
    """
    true_fg, pred_fg = _check_pair(true_masks, pred_masks)
    return metrics_from_counts(_counts(true_fg, pred_fg))


def metrics_from_counts(counts: dict[str, int]) -> dict:
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    iou = {"background": _ratio(tn, tn + fn + fp), "foreground": _ratio(tp, tp + fp + fn)}
    defined = [value for value in iou.values() if value is not None]
    return {
        "mean_iou": _round(sum(defined) / len(defined)),
        "iou": {name: _round(value) for name, value in iou.items()},
        "dice": _round(_ratio(2 * tp, 2 * tp + fp + fn)),
        "precision": _round(_ratio(tp, tp + fp)),
        "recall": _round(_ratio(tp, tp + fn)),
        "pixel_accuracy": _round(_ratio(tp + tn, tp + fp + fn + tn)),
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), DECIMALS)


# --- Per image ----------------------------------------------------------------------------------


def per_image_metrics(true_masks, pred_masks) -> list[dict]:
    """One row per image: index, foreground iou and dice, and the truth's foreground_fraction.

    The masks are N x H x W arrays, or lists of H x W arrays of any sizes (pairs must match).
    An image with no foreground in truth or prediction scores iou = dice = 1.
    """
    if len(true_masks) != len(pred_masks):
        raise ValueError(f"{len(true_masks)} true masks but {len(pred_masks)} predicted masks")
    rows = []
    for i, (truth, predicted) in enumerate(zip(true_masks, pred_masks)):
        true_fg, pred_fg = _check_pair(truth, predicted)
        if true_fg.ndim != 2:
            raise ValueError(f"per_image_metrics needs H x W masks, got shape {true_fg.shape} at index {i}")
        tp = np.count_nonzero(true_fg & pred_fg)
        both = np.count_nonzero(true_fg) + np.count_nonzero(pred_fg)
        iou, dice = (1.0, 1.0) if both == 0 else (tp / (both - tp), 2 * tp / both)
        rows.append({"index": i, "iou": _round(iou), "dice": _round(dice),
                     "foreground_fraction": _round(np.count_nonzero(true_fg) / true_fg.size)})
    return rows


def pixels(arrays) -> np.ndarray:
    """Every pixel of a list of H x W (x C) arrays of any sizes, one after another: P (x C)."""
    return np.concatenate([np.asarray(array).reshape((-1,) + np.shape(array)[2:]) for array in arrays])


# --- IoU against the threshold ------------------------------------------------------------------


def iou_vs_threshold(true_masks, fg_probs, n_thresholds: int = 21) -> list[dict]:
    """Mean and foreground IoU at `n_thresholds` evenly spaced thresholds from 0 to 1.

    Rows {threshold, mean_iou, foreground_iou} for a DVC linear plot. At threshold 0 every
    pixel with non-zero probability is foreground (all of them, for softmax outputs that did not
    underflow); at threshold 1 none is. The row at 0.5 equals segmentation_metrics at 0.5.
    """
    if n_thresholds < 2:
        raise ValueError(f"n_thresholds must be at least 2 (both ends of 0..1), got {n_thresholds}")
    true_fg = _as_bool_masks(true_masks, "true_masks")
    fg_probs = np.asarray(fg_probs)
    if fg_probs.shape != true_fg.shape:
        raise ValueError(f"fg_probs has shape {fg_probs.shape}, true_masks {true_fg.shape}: "
                         "they must match")
    rows = []
    for threshold in np.linspace(0.0, 1.0, n_thresholds):
        pred_fg = predict_masks(fg_probs, float(threshold)).view(bool)
        metrics = metrics_from_counts(_counts(true_fg, pred_fg))
        rows.append({"threshold": _round(threshold), "mean_iou": metrics["mean_iou"],
                     "foreground_iou": metrics["iou"]["foreground"]})
    return rows


# --- Baselines ----------------------------------------------------------------------------------


def baselines(true_masks, images, train_images, train_masks) -> dict[str, dict]:
    """What a model must beat: `segmentation_metrics` of three rules that learn nothing.

    - all_background: every pixel background.
    - all_foreground: every pixel foreground.
    - intensity_threshold: grayscale the images; foreground is one side of a single intensity
      threshold. The threshold is Otsu's on the train images' grayscale pixels; the side
      (bright or dark) is whichever gives the higher mean IoU on the train masks. Both are
      fixed on the train set, then applied to `images`. Its entry also holds the rule it used:
      "threshold" (grayscale units of the input, 0..255 for raw pixels) and "foreground_is_bright".
    """
    true_fg = _as_bool_masks(true_masks, "true_masks")
    rule = fit_intensity_threshold(train_images, train_masks)
    predicted = apply_intensity_threshold(images, **rule)
    return {
        "all_background": segmentation_metrics(true_fg, np.zeros_like(true_fg)),
        "all_foreground": segmentation_metrics(true_fg, np.ones_like(true_fg)),
        "intensity_threshold": segmentation_metrics(true_fg, predicted) | rule,
    }


def beats_baselines(model_metrics: dict, baseline_metrics: dict[str, dict], margin: float) -> bool:
    """Whether the model's mean IoU is above every baseline's by more than `margin`."""
    best = max((b["mean_iou"] for b in baseline_metrics.values() if b["mean_iou"] is not None), default=0.0)
    return model_metrics["mean_iou"] is not None and model_metrics["mean_iou"] > best + margin


def headline_metrics(model_metrics: dict, baseline_metrics: dict[str, dict], learned: bool) -> dict:
    """The few numbers to compare across runs, with names short enough for `dvc metrics show` to
    fit a terminal: the model's mean IoU (miou), foreground IoU, Dice, pixel accuracy, the best
    baseline's mean IoU (base_miou) and whether the model beats it (learned: `beats_baselines`)."""
    best = max((b["mean_iou"] for b in baseline_metrics.values() if b["mean_iou"] is not None), default=None)
    return {"miou": model_metrics["mean_iou"], "fg_iou": model_metrics["iou"]["foreground"],
            "dice": model_metrics["dice"], "accuracy": model_metrics["pixel_accuracy"],
            "base_miou": best, "learned": learned}


def grayscale(images) -> np.ndarray:
    """N x H x W x 3 RGB (any range) -> N x H x W float32 luma; N x H x W passes through."""
    images = np.asarray(images)
    if images.ndim >= 1 and images.shape[-1] == 3:
        return images.astype(np.float32) @ np.array(LUMA_WEIGHTS_RGB, dtype=np.float32)
    if images.ndim == 3 or (images.ndim == 4 and images.shape[-1] == 1):
        return images.reshape(images.shape[:3]).astype(np.float32)
    raise ValueError(f"images must be N x H x W x 3 (RGB) or N x H x W (gray), "
                     f"got shape {images.shape}")


def otsu_threshold(values, n_bins: int = 256) -> float:
    """Otsu's threshold: the cut of a 256-bin histogram that maximises the between-class variance.

    Values >= the returned threshold form the upper class. The bins span the values' own range,
    so it works for 0..255 and 0..1 data alike.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if low == high:
        return low
    counts, edges = np.histogram(values, bins=n_bins, range=(low, high))
    return otsu_from_histogram(counts, edges)


def otsu_from_histogram(counts: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold from a histogram of every value (`otsu_threshold`'s second half)."""
    centres = (edges[:-1] + edges[1:]) / 2
    weight_lower = np.cumsum(counts)[:-1]                        # pixels in bins 0..k, k < n_bins-1
    weight_upper = int(np.sum(counts)) - weight_lower
    sum_lower = np.cumsum(counts * centres)[:-1]
    mean_lower = sum_lower / np.maximum(weight_lower, 1)
    mean_upper = (np.sum(counts * centres) - sum_lower) / np.maximum(weight_upper, 1)
    between_variance = weight_lower * weight_upper * (mean_lower - mean_upper) ** 2
    return float(edges[np.argmax(between_variance) + 1])


def fit_intensity_threshold(train_images, train_masks) -> dict:
    """The intensity_threshold baseline's rule, fitted on the train set (see `baselines`)."""
    gray = grayscale(train_images)
    true_fg = _as_bool_masks(train_masks, "train_masks")
    if gray.shape != true_fg.shape:
        raise ValueError(f"train_images give {gray.shape} gray pixels, train_masks "
                         f"{true_fg.shape}: they must match")
    threshold = otsu_threshold(gray)
    bright = gray >= threshold
    iou_bright = metrics_from_counts(_counts(true_fg, bright))["mean_iou"]
    iou_dark = metrics_from_counts(_counts(true_fg, ~bright))["mean_iou"]
    return {"threshold": _round(threshold), "foreground_is_bright": bool(iou_bright >= iou_dark)}


def apply_intensity_threshold(images, threshold: float, foreground_is_bright: bool) -> np.ndarray:
    bright = grayscale(images) >= threshold
    return (bright if foreground_is_bright else ~bright).astype(np.uint8)


# --- Input checks -------------------------------------------------------------------------------


def _check_pair(true_masks, pred_masks) -> tuple[np.ndarray, np.ndarray]:
    true_fg = _as_bool_masks(true_masks, "true_masks")
    pred_fg = _as_bool_masks(pred_masks, "pred_masks")
    if true_fg.shape != pred_fg.shape:
        raise ValueError(f"true_masks has shape {true_fg.shape}, pred_masks {pred_fg.shape}: "
                         "they must match")
    return true_fg, pred_fg


def _as_bool_masks(masks, name: str) -> np.ndarray:
    masks = np.asarray(masks)
    if masks.size == 0:
        raise ValueError(f"{name} is empty (shape {masks.shape})")
    if masks.dtype == bool:
        return masks
    as_bool = masks.astype(bool)
    if not np.array_equal(as_bool, masks):
        raise ValueError(f"{name} must hold only 0 and 1 (foreground), got values "
                         f"{np.unique(masks)[:10].tolist()}")
    return as_bool
