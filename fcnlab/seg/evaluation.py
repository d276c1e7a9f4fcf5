"""evaluate-iou's numbers gathered one test image at a time, so no step holds a whole split.

The results equal `fcnlab.seg.metrics` applied to the whole split's pixels joined together
(`segmentation_metrics`, `iou_vs_threshold`, `baselines`, `per_image_metrics`): every whole-set
number there is a function of confusion counts, and counts add up image by image. The
intensity baseline's Otsu threshold is fitted the same way: the range of the training
grayscale first, then its 256-bin histogram summed image by image.
"""

from __future__ import annotations

import numpy as np

from fcnlab.seg.predict import predict_images
from fcnlab.seg.metrics import (DECIMALS, confusion_counts, grayscale, metrics_from_counts, otsu_from_histogram,
                                per_image_metrics, predict_masks)

OTSU_BINS = 256
PREDICTION_CHUNK = 64          # test images predicted at a time


def _gray_pixels(image) -> np.ndarray:
    """H x W x 3 RGB -> P float32 luma, computed as on the split's pixels joined (P x 3)."""
    return grayscale(np.asarray(image).reshape(-1, 3))


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


def _added(total: dict, counts: dict) -> dict:
    return {name: total.get(name, 0) + count for name, count in counts.items()}


def fit_intensity_threshold_by_image(train_images, train_masks) -> dict:
    """`metrics.fit_intensity_threshold` on the training split, reading one image at a time."""
    low, high = np.inf, -np.inf
    for image in train_images:
        gray = _gray_pixels(image)
        low, high = min(low, float(gray.min())), max(high, float(gray.max()))
    if low == high:
        threshold = low
    else:
        counts = np.zeros(OTSU_BINS, np.int64)
        for image in train_images:
            counts += np.histogram(_gray_pixels(image).astype(np.float64), bins=OTSU_BINS, range=(low, high))[0]
        threshold = otsu_from_histogram(counts, np.histogram_bin_edges([], bins=OTSU_BINS, range=(low, high)))
    bright, dark = {}, {}
    for image, mask in zip(train_images, train_masks):
        is_bright = (_gray_pixels(image) >= threshold).astype(np.uint8)
        truth = np.asarray(mask).reshape(-1)
        bright = _added(bright, confusion_counts(truth, is_bright))
        dark = _added(dark, confusion_counts(truth, 1 - is_bright))
    iou_bright, iou_dark = metrics_from_counts(bright)["mean_iou"], metrics_from_counts(dark)["mean_iou"]
    return {"threshold": _round(threshold), "foreground_is_bright": bool(iou_bright >= iou_dark)}


class EvaluationTally:
    """Confusion counts of the model (at `threshold` and at `n_thresholds` points from 0 to 1)
    and of the baselines, and one per-image row, added image by image (`add`)."""

    def __init__(self, threshold: float, n_thresholds: int, intensity_rule: dict):
        self.threshold = threshold
        self.thresholds = np.linspace(0.0, 1.0, n_thresholds)
        self.rule = intensity_rule
        self.model: dict = {}
        self.curve: list[dict] = [{} for _ in self.thresholds]
        self.baseline: dict[str, dict] = {"all_background": {}, "all_foreground": {}, "intensity_threshold": {}}
        self.rows: list[dict] = []

    def add(self, image, mask, fg_probs) -> None:
        """One test image (H x W x 3), its 0/1 mask and its H x W foreground probabilities."""
        mask = np.asarray(mask)
        predicted = predict_masks(fg_probs, self.threshold)
        self.model = _added(self.model, confusion_counts(mask, predicted))
        for i, threshold in enumerate(self.thresholds):
            self.curve[i] = _added(self.curve[i], confusion_counts(mask, predict_masks(fg_probs, float(threshold))))
        bright = (_gray_pixels(image) >= self.rule["threshold"]).reshape(mask.shape)
        intensity = (bright if self.rule["foreground_is_bright"] else ~bright).astype(np.uint8)
        for name, guess in (("all_background", np.zeros_like(mask)), ("all_foreground", np.ones_like(mask)),
                            ("intensity_threshold", intensity)):
            self.baseline[name] = _added(self.baseline[name], confusion_counts(mask, guess))
        row = per_image_metrics([mask], [predicted])[0]
        self.rows.append({**row, "index": len(self.rows)})

    def model_metrics(self) -> dict:
        return metrics_from_counts(self.model)

    def baselines(self) -> dict[str, dict]:
        """As `metrics.baselines`: each rule's metrics, the intensity rule's own fields with it."""
        metrics = {name: metrics_from_counts(counts) for name, counts in self.baseline.items()}
        metrics["intensity_threshold"] |= self.rule
        return metrics

    def threshold_curve(self) -> list[dict]:
        """As `metrics.iou_vs_threshold`."""
        rows = []
        for threshold, counts in zip(self.thresholds, self.curve):
            metrics = metrics_from_counts(counts)
            rows.append({"threshold": _round(threshold), "mean_iou": metrics["mean_iou"],
                         "foreground_iou": metrics["iou"]["foreground"]})
        return rows


def predicted_and_tallied(model, images, masks, tally: EvaluationTally, precision: str = "float32"):
    """Each image's H x W foreground probabilities (`predict_images`), predicted a chunk of images
    at a time and added to `tally` as they come."""
    for start in range(0, len(images), PREDICTION_CHUNK):
        stop = min(start + PREDICTION_CHUNK, len(images))
        for i, fg_probs in zip(range(start, stop), predict_images(model, images[start:stop], precision=precision)):
            tally.add(images[i], masks[i], fg_probs)
            yield fg_probs
