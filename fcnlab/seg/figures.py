"""Figures of the FCN half: the seed's 2x2 prediction figure, and best/worst-by-IoU grids.

Colours used throughout: prediction = translucent blue fill (the seed's "Blues" overlay),
ground truth = green outline, so both can be read on one image.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PREDICTION_FILL = ListedColormap([(0, 0, 0, 0), (0.12, 0.35, 0.95, 0.5)])   # 0 clear, 1 blue
ERRORS = ListedColormap(["black", "white", "tab:red", "tab:orange"])       # tn, tp, fp, fn
TRUTH_COLOUR = "lime"


def _draw_prediction_and_truth(ax, image, true_mask, pred_mask):
    ax.imshow(image)
    ax.imshow(pred_mask, cmap=PREDICTION_FILL, vmin=0, vmax=1, interpolation="nearest")
    if true_mask is not None and true_mask.any() and not true_mask.all():
        ax.contour(true_mask, levels=[0.5], colors=TRUTH_COLOUR, linewidths=1.0)


def _no_ticks(axes):
    for ax in np.ravel(axes):
        ax.set_xticks([])
        ax.set_yticks([])


def prediction_figure(image, true_mask, pred_mask, title: str):
    """The seed's figure (image, predicted mask, overlay) plus a fourth panel of the errors."""
    fig, axes = plt.subplots(2, 2, figsize=(8, 8))
    axes[0, 0].imshow(image)
    axes[0, 0].set_title("image")
    axes[0, 1].imshow(pred_mask, cmap="Blues", vmin=0, vmax=1)
    axes[0, 1].set_title("predicted mask")
    _draw_prediction_and_truth(axes[1, 0], image, true_mask, pred_mask)
    axes[1, 0].set_title("overlay (blue: predicted, green: truth)")
    errors = true_mask.astype(np.uint8) + 2 * (pred_mask != true_mask)        # 0 tn 1 tp 2 fp 3 fn
    errors = np.where(errors == 2, np.where(pred_mask == 1, 2, 3), errors)
    axes[1, 1].imshow(errors, cmap=ERRORS, vmin=0, vmax=3, interpolation="nearest")
    axes[1, 1].set_title("errors")
    axes[1, 1].legend(handles=[Patch(color=c, label=l) for c, l in
                               zip(ERRORS.colors[1:], ("correct foreground", "false positive", "missed"))],
                      loc="lower right", fontsize=7)
    _no_ticks(axes)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def ranked_grid_figure(images, true_masks, pred_masks, indices, ious, title: str):
    """One column per image in `indices`: top the image, bottom prediction vs truth, with IoU."""
    n = len(indices)
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.6), squeeze=False)
    for column, index in enumerate(indices):
        axes[0, column].imshow(images[index])
        axes[0, column].set_title(f"test #{index}  IoU {ious[index]:.2f}", fontsize=9)
        _draw_prediction_and_truth(axes[1, column], images[index], true_masks[index], pred_masks[index])
    _no_ticks(axes)
    fig.legend(handles=[Patch(color=PREDICTION_FILL.colors[1], label="predicted"),
                        Line2D([], [], color=TRUTH_COLOUR, label="ground truth")],
               loc="lower center", ncol=2)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
