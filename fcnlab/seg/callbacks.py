"""Keras callbacks that steer FCN training by the validation IoU.

    ValidationIoU          each epoch: predict the validation images, write val_mean_iou and
                           val_foreground_iou into the epoch's logs
    DoNothingWatch         each epoch: say so while training runs when val_mean_iou is no better
                           than predicting all background (or all foreground) would be
    KeepBestEpoch          remember the weights of the best epoch; put them back when training ends
    early_stopping         Keras' EarlyStopping on val_mean_iou (mode "max", no restoring of its own)
    lr_schedule_callback   "constant", "cosine" (per epoch, from the learning rate to ~0) or
                           "plateau" (Keras' ReduceLROnPlateau on val_mean_iou)

Order matters. Keras calls the callbacks in list order, all with one shared `logs` dict per
epoch (keras.callbacks.CallbackList.on_epoch_end in Keras 3.15), and appends its own History and
progress bar after them. So ValidationIoU goes first and everything that reads val_mean_iou
after it:

    callbacks = [ValidationIoU(predict, val_masks), KeepBestEpoch(), early_stopping(patience),
                 lr_schedule_callback("plateau", lr, epochs), DVCLiveCallback(...)]

Keras' EarlyStopping and ReduceLROnPlateau only warn when their metric is missing from the logs
(and then never stop or reduce); KeepBestEpoch raises instead. Both also need mode="max" given
explicitly: in Keras 3.15 "auto" cannot tell which way val_mean_iou improves and raises (older
Keras' ReduceLROnPlateau took "auto" as "min" for any name without "acc" in it).

EarlyStopping and the best epoch, as Keras 3.15 does it: with restore_best_weights=True it
restores the best epoch's weights at the end of training whether or not it stopped early
(tf.keras 2 restored only after an early stop), and its `best_epoch` is 0-based. Here
`early_stopping` leaves restore_best_weights off and KeepBestEpoch does the restoring, so one
object says which epoch was kept (1-based, as Keras prints epochs), stopped early or not. Both
count "better" the same way (strictly greater, no min_delta), so if restore_best_weights were
also on, both would pick the same epoch.

The optimizer's learning rate is a variable that the compiled train step reads every step;
LearningRateScheduler and ReduceLROnPlateau assign it between epochs. That holds for
fcnlab.seg.speedups.FusedAdam too, which passes the current rate to its fused kernel.
"""

from __future__ import annotations

import math
import sys

import keras
import numpy as np

from fcnlab.seg.metrics import confusion_counts, metrics_from_counts, predict_masks

LR_SCHEDULES = ("constant", "cosine", "plateau")


class ValidationIoU(keras.callbacks.Callback):
    """At each epoch's end, val_mean_iou and val_foreground_iou into the logs.

    `predict_fn()` returns (or yields) one H x W foreground-probability array per validation image, in the
    order of `masks` (0/1 arrays; images may differ in size). A pixel counts as foreground when
    its probability is above `threshold`. IoUs are over all validation pixels together (one
    confusion count), mean IoU the mean of background and foreground IoU, as evaluate-iou
    reports them. `history` holds one {"epoch", "mean_iou", "foreground_iou"} per epoch.

    The masks must hold some foreground: without it the foreground IoU is undefined (0 / 0 when
    nothing is predicted either) and there is nothing for the callbacks after this one to track.
    """

    def __init__(self, predict_fn, masks, threshold: float = 0.5):
        super().__init__()
        self.masks = masks          # a sequence, read each epoch (prepare-seg's are read from disk as used)
        if not len(masks):
            raise ValueError("ValidationIoU needs at least one validation mask, got none")
        if not any([_checked_mask(mask, i).any() for i, mask in enumerate(masks)]):
            raise ValueError(f"the {len(self.masks)} validation masks hold no foreground pixel: "
                             "foreground IoU would be undefined")
        self.predict_fn = predict_fn
        self.threshold = threshold
        self.history = []

    def on_epoch_end(self, epoch, logs=None):
        metrics = metrics_from_counts(summed_counts(self.masks, self.predict_fn(), self.threshold))
        row = {"epoch": epoch + 1, "mean_iou": metrics["mean_iou"],
               "foreground_iou": metrics["iou"]["foreground"]}
        self.history.append(row)
        if logs is not None:
            logs["val_mean_iou"] = row["mean_iou"]
            logs["val_foreground_iou"] = row["foreground_iou"]


class DoNothingWatch(keras.callbacks.Callback):
    """Report a model stuck at a do-nothing baseline while it trains, not only after evaluation.

    The validation masks give the mean IoU of predicting every pixel background, (1 - f) / 2,
    and every pixel foreground, f / 2 (f the foreground share). From `first_epoch` on, an epoch
    whose val_mean_iou (written by ValidationIoU, which must come first) is not above the better
    of the two by `margin` prints one warning line, and every epoch logs `val_at_baseline` (1 or
    0) so the curves show it too.
    """

    def __init__(self, masks, who: str = "train-fcn", margin: float = 0.02, first_epoch: int = 2):
        super().__init__()
        foreground = sum(int(np.count_nonzero(mask)) for mask in masks)
        fraction = foreground / max(1, sum(int(np.asarray(mask).size) for mask in masks))
        self.baselines = {"all-background": (1 - fraction) / 2, "all-foreground": fraction / 2}
        self.who, self.margin, self.first_epoch = who, margin, first_epoch

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or logs.get("val_mean_iou") is None:
            return
        name = max(self.baselines, key=self.baselines.get)
        stuck = float(logs["val_mean_iou"]) <= self.baselines[name] + self.margin
        logs["val_at_baseline"] = float(stuck)
        if stuck and epoch + 1 >= self.first_epoch:
            print(f"warning: {self.who}: epoch {epoch + 1}: validation mean IoU {logs['val_mean_iou']:.3f} is "
                  f"at the {name} baseline ({self.baselines[name]:.3f}): the model has learned nothing "
                  "yet (README, 'When the model learns nothing')", file=sys.stderr, flush=True)


def summed_counts(masks, fg_probs, threshold: float = 0.5) -> dict[str, int]:
    """tp, fp, fn, tn summed over image/probability pairs that may each have their own size.

    `fg_probs` may be a generator: each map is counted and let go before the next is made.
    """
    total = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    n_probs = 0
    for i, probs in enumerate(fg_probs):
        n_probs += 1
        if i >= len(masks):
            continue
        mask = masks[i]
        probs = np.asarray(probs)
        if probs.shape != mask.shape:
            raise ValueError(f"validation image {i}: probabilities of shape {probs.shape} for a mask "
                             f"of shape {mask.shape}")
        for name, count in confusion_counts(mask, predict_masks(probs, threshold)).items():
            total[name] += count
    if n_probs != len(masks):
        raise ValueError(f"got {n_probs} probability maps for {len(masks)} validation masks")
    return total


def _checked_mask(mask, index: int) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"validation mask {index} must be H x W, got shape {mask.shape}")
    return mask


class KeepBestEpoch(keras.callbacks.Callback):
    """Copy the weights whenever `monitor` beats its best so far; restore them when training ends.

    After `fit`: `best_epoch` (1-based), `best_value`, and `history` (the monitored value of
    every epoch run). "Better" is strictly greater ("max") or smaller ("min"): on a tie the
    earlier epoch stays; NaN is never better. The copy is host memory: the size of the weights.
    """

    def __init__(self, monitor: str = "val_mean_iou", mode: str = "max"):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self._reset()

    def _reset(self):
        self.best_epoch, self.best_value, self.best_weights, self.history = None, None, None, []

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ValueError(f"KeepBestEpoch monitors {self.monitor!r}, which is not in this epoch's logs "
                             f"({', '.join(logs or {}) or 'empty'}); the callback that writes it "
                             "(ValidationIoU for val_mean_iou) must come before KeepBestEpoch")
        value = float(value)
        self.history.append(value)
        if self._is_better(value):
            self.best_epoch, self.best_value = epoch + 1, value
            self.best_weights = self.model.get_weights()

    def _is_better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_value is None:
            return True
        return value > self.best_value if self.mode == "max" else value < self.best_value

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)


def early_stopping(patience: int, monitor: str = "val_mean_iou", mode: str = "max"):
    """Keras' EarlyStopping: stop once `monitor` has not improved for `patience` epochs.

    Leaves the weights alone (KeepBestEpoch restores the best ones; see the module docstring).
    """
    if not isinstance(patience, int) or patience < 1:
        raise ValueError(f"patience must be a positive integer (epochs), got {patience!r}")
    return keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience,
                                         restore_best_weights=False)


def lr_schedule_callback(name: str, learning_rate: float, epochs: int, plateau_factor: float = 0.5,
                         plateau_patience: int = 2, min_learning_rate: float = 0.0,
                         monitor: str = "val_mean_iou"):
    """The callback that sets the learning rate of each epoch; it also logs "learning_rate".

    "constant": `learning_rate` every epoch. "cosine": `cosine_learning_rate` over `epochs`.
    "plateau": Keras' ReduceLROnPlateau, multiplying the rate by `plateau_factor` once `monitor`
    (mode "max") has not improved by 1e-4 for `plateau_patience` epochs, never below
    `min_learning_rate`.
    """
    if name not in LR_SCHEDULES:
        raise ValueError(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)}, got {name!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if name == "constant":
        return keras.callbacks.LearningRateScheduler(lambda epoch, current: float(learning_rate))
    if name == "cosine":
        return keras.callbacks.LearningRateScheduler(
            lambda epoch, current: cosine_learning_rate(epoch, learning_rate, epochs))
    if not 0 < plateau_factor < 1:
        raise ValueError(f"plateau_factor must be in (0, 1), got {plateau_factor!r}")
    return keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode="max", factor=plateau_factor,
                                             patience=plateau_patience, min_lr=min_learning_rate)


def cosine_learning_rate(epoch: int, learning_rate: float, epochs: int) -> float:
    """learning_rate x (1 + cos(pi x epoch / epochs)) / 2 for 0-based `epoch`: the full rate in
    the first epoch, falling along a half cosine to learning_rate x (1 - cos(pi / epochs)) / 2
    in the last (2.4 % of it over 10 epochs); past `epochs` it stays at 0."""
    progress = min(epoch, epochs) / epochs
    return float(learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress)))
