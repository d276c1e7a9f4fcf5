"""Losses for binary segmentation with a rare foreground class.

    crossentropy            categorical cross-entropy, the seed's loss (every pixel counts once)
    weighted_crossentropy   the same, each pixel weighted by its true class (`class_weights`)
    dice                    1 - soft Dice of the rarer class's channel, over the whole batch
    crossentropy_dice       crossentropy + dice

Inputs are what the FCN is fitted on: `y_true` one-hot N x H x W x 2 (channel 1 = foreground),
`y_pred` the softmax probabilities N x H x W x 2, possibly bfloat16 under mixed precision; the
loss is always computed in float32.

Why these: with 12 % foreground, predicting "all background" already scores 88 % pixel
accuracy, and plain cross-entropy can settle there (the retinal-vessel run of issue 13 did).
Weighting the foreground pixels up, or scoring the foreground's overlap directly (Dice, which
ignores the true negatives), makes that all-background answer expensive.

Dice is scored on the rarer class (`dice_class`, chosen from the training masks by
`rarer_class`): on masks that are mostly foreground, the foreground's Dice is already high for
"all foreground" and holds the model there, while the background's Dice scores the thin
structure between the objects. Cross-entropy treats both classes alike, so with the Dice on the
rarer class a data set and its inverted masks train the same way.

Each loss's `call` returns a per-pixel map (N x H x W) whose mean is the batch's loss, so Keras'
usual reduction averages it and, under a `tf.distribute` strategy, scales it per replica. Dice
is one number per batch; its map holds that number at every pixel. (Under a strategy each
replica's Dice is over its own share of the batch.)
"""

from __future__ import annotations

import math

import keras
from keras import ops

LOSSES = ("crossentropy", "weighted_crossentropy", "dice", "crossentropy_dice")

# Probabilities are clipped to [EPSILON, 1 - EPSILON] before the log, as Keras'
# categorical_crossentropy does (keras.config.epsilon() is 1e-7), so log(0) never happens.
EPSILON = 1e-7
# Added to the Dice numerator and denominator, in pixels: a batch with no foreground predicted
# and none true scores Dice 1 (loss 0) instead of 0/0. Against the thousands of pixels in a
# batch (8 x 128 x 128 = 131,072) it changes nothing else measurably.
DICE_SMOOTH = 1.0
# `class_weights` treats a foreground fraction below MIN_FRACTION (or above 1 - MIN_FRACTION)
# as MIN_FRACTION: the rarer class weighs at most 99 times the other. Uncapped, a handful of
# foreground pixels in a large training set would get weights in the thousands, and one batch
# that holds them would swamp every other step's gradient.
MIN_FRACTION = 0.01


def class_weights(foreground_fraction: float, min_fraction: float = MIN_FRACTION) -> tuple[float, float]:
    """(w_background, w_foreground): inverse-frequency weights whose mean over the masks is 1.

    With foreground fraction f, the weights are proportional to 1 / (1 - f) and 1 / f, so each
    class contributes the same total weight; they are scaled so that
    (1 - f) * w_background + f * w_foreground = 1, i.e. the weighted loss stays on the scale of
    plain cross-entropy and the learning rate keeps its meaning. For the ratio between the two,
    f is first clipped to [min_fraction, 1 - min_fraction] (see MIN_FRACTION); the scaling uses
    the true f. Example: f = 0.12 gives (0.568, 4.167).
    """
    f = float(foreground_fraction)
    if not math.isfinite(f) or not 0.0 <= f <= 1.0:
        raise ValueError(f"foreground_fraction must be a number in [0, 1], got {foreground_fraction!r}")
    if not 0.0 < min_fraction < 0.5:
        raise ValueError(f"min_fraction must be in (0, 0.5), got {min_fraction!r}")
    clipped = min(max(f, min_fraction), 1.0 - min_fraction)
    ratio = (1.0 - clipped) / clipped                               # w_foreground / w_background
    w_background = 1.0 / ((1.0 - f) + f * ratio)
    return w_background, w_background * ratio


def rarer_class(foreground_fraction: float) -> int:
    """The class the Dice scores: 1 (foreground) unless the masks are mostly foreground, then 0."""
    return 1 if foreground_fraction <= 0.5 else 0


def segmentation_loss(name: str, class_weights=None, dice_class: int = 1) -> keras.losses.Loss:
    """The loss called `name` (one of LOSSES), ready for `model.compile(loss=...)`.

    `class_weights` (w_background, w_foreground) is required by "weighted_crossentropy" and
    refused by the others; `dice_class` (0 or 1, see `rarer_class`) is the channel the Dice of
    "dice" and "crossentropy_dice" scores. Calling the loss on (y_true, y_pred) gives the batch's mean.
    """
    if name not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {name!r}")
    if (name == "weighted_crossentropy") != (class_weights is not None):
        raise ValueError(f"class_weights are for weighted_crossentropy only, got loss {name!r} "
                         f"with class_weights={class_weights!r}")
    if class_weights is not None:
        class_weights = _checked_weights(class_weights)
    if dice_class not in (0, 1):
        raise ValueError(f"dice_class must be 0 (background) or 1 (foreground), got {dice_class!r}")
    return SegmentationLoss(kind=name, class_weights=class_weights, dice_class=dice_class)


def _checked_weights(weights) -> tuple[float, float]:
    weights = tuple(float(w) for w in weights)
    if len(weights) != 2 or not all(math.isfinite(w) and w > 0 for w in weights):
        raise ValueError(f"class_weights must be two positive numbers (background, foreground), "
                         f"got {weights!r}")
    return weights


@keras.saving.register_keras_serializable(package="fcnlab")
class SegmentationLoss(keras.losses.Loss):
    """One of LOSSES as a Keras loss (saved and loaded with the model by its config)."""

    def __init__(self, kind: str = "crossentropy", class_weights=None, dice_class: int = 1, name=None,
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name or kind, reduction=reduction, dtype=dtype)
        self.kind = kind
        self.class_weights = None if class_weights is None else tuple(class_weights)
        self.dice_class = int(dice_class)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "float32")                           # N x H x W x 2
        y_pred = ops.cast(y_pred, "float32")
        if self.kind == "crossentropy":
            return pixel_crossentropy(y_true, y_pred)                   # N x H x W
        if self.kind == "weighted_crossentropy":
            weights = ops.sum(y_true * ops.convert_to_tensor(self.class_weights, "float32"), axis=-1)
            return weights * pixel_crossentropy(y_true, y_pred)
        dice = ops.zeros_like(y_true[..., 0]) + soft_dice_loss(y_true, y_pred, self.dice_class)  # N x H x W
        if self.kind == "dice":
            return dice
        return pixel_crossentropy(y_true, y_pred) + dice

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "dice_class": self.dice_class,
                "class_weights": None if self.class_weights is None else list(self.class_weights)}


def pixel_crossentropy(y_true, y_pred):
    """-sum(y_true * log(p)) per pixel, p = y_pred renormalised and clipped as Keras does."""
    probs = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    probs = ops.clip(probs, EPSILON, 1.0 - EPSILON)
    return -ops.sum(y_true * ops.log(probs), axis=-1)                  # N x H x W


def soft_dice_loss(y_true, y_pred, channel: int = 1):
    """1 - (2 sum(p t) + s) / (sum p + sum t + s) over every pixel of the batch's `channel`
    (1 = foreground; p predicted probability, t truth, s = DICE_SMOOTH): a scalar in [0, 1]."""
    truth, prob = y_true[..., channel], y_pred[..., channel]
    overlap = ops.sum(truth * prob)
    return 1.0 - (2.0 * overlap + DICE_SMOOTH) / (ops.sum(truth) + ops.sum(prob) + DICE_SMOOTH)
