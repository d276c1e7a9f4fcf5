"""An interactive latent-space explorer: one self-contained HTML page, no network needed.

    test latents + labels ──► scatter on a <canvas>, coloured by digit (the scatter PNG's colours)
    n x n latent grid ──decoder──► n*n 28x28 images, embedded as base64 uint8

Moving the pointer over the scatter (or clicking, which pins the point) shows the decoded image
of the *nearest* grid point beside it, with the pointer's and the grid point's coordinates.
The page is plain HTML, CSS and JavaScript in one file (the template `explorer.html` beside this
module, filled in here): no CDN, no external script or font.

Size: the images dominate, n*n*784 bytes, 4/3 of that in base64; a 32 x 32 grid gives a page
of about 1.1 MB. The same inputs give the same bytes (no timestamps; floats written by `repr`).
"""

from __future__ import annotations

import base64
import json
from importlib import resources

import numpy as np

from fcnlab.cae.data import DIGIT_SIDE_PX as IMAGE_SIZE

PAGE_TEMPLATE = "explorer.html"   # beside this module, shipped as package data (pyproject.toml)

# Matplotlib's default colour cycle (tab10): the k-th digit present gets the k-th colour, as in
# latent_scatter_figure, so the page and the scatter PNG colour each digit the same way.
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def explorer_grid(latents: np.ndarray, n: int, margin: float = 0.005,
                  padding: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid over the latent cloud: its central 99 % per axis, widened by 5 % each side.

    Returns (z1 values, z2 values), each of length n; z2 runs top (high) to bottom (low), the
    order of `fcnlab.cae.latent.latent_grid`, so image k of the grid is (z1[k % n], z2[k // n]).
    """
    if n < 2:
        raise ValueError(f"the explorer grid needs n >= 2 points per axis, got {n}")
    low = np.quantile(latents, margin, axis=0)
    high = np.quantile(latents, 1 - margin, axis=0)
    span = np.where(high > low, high - low, 1.0)   # a degenerate axis still gets a unit range
    low, high = low - padding * span, high + padding * span
    return np.linspace(low[0], high[0], n), np.linspace(high[1], low[1], n)


def images_to_uint8(images: np.ndarray) -> np.ndarray:
    """Decoded images (any float range) -> uint8 grey levels: clipped to [0, 1], then x255, rounded.

    The CAE's last layer is linear, so decodes can leave [0, 1]; the page shows them clipped,
    as imshow(vmin=0, vmax=1) would. Quantisation error: at most half a grey level (0.5/255).
    """
    return np.round(np.clip(np.asarray(images, dtype=np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def explorer_html(test_latents: np.ndarray, test_labels: np.ndarray, grid_z1: np.ndarray,
                  grid_z2: np.ndarray, grid_images: np.ndarray) -> str:
    """The explorer page as one HTML string.

    test_latents: N x 2, test_labels: N digits; grid_z1 (n1, increasing) and grid_z2 (n2, top to
    bottom) as from `explorer_grid`; grid_images: the decodes of (z1[i], z2[j]) in row-major
    order, j outer, shaped n2*n1 x 28 x 28 or n2 x n1 x 28 x 28.
    """
    test_latents = np.asarray(test_latents, dtype=np.float64)
    test_labels = np.asarray(test_labels)
    grid_z1, grid_z2 = np.asarray(grid_z1, dtype=np.float64), np.asarray(grid_z2, dtype=np.float64)
    n1, n2 = len(grid_z1), len(grid_z2)
    if (test_latents.ndim != 2 or test_latents.shape[1] != 2 or len(test_latents) == 0
            or test_labels.shape != (len(test_latents),)):
        raise ValueError(f"need N >= 1 latents (N x 2) and N labels, got {test_latents.shape} and {test_labels.shape}")
    if n1 < 2 or n2 < 2 or np.any(np.diff(grid_z1) <= 0) or np.any(np.diff(grid_z2) >= 0):
        raise ValueError("grid_z1 must increase and grid_z2 decrease, each with >= 2 values (see explorer_grid)")
    if np.size(grid_images) != n2 * n1 * IMAGE_SIZE * IMAGE_SIZE:
        raise ValueError(f"need {n2}*{n1} decoded 28x28 images, got an array of shape {np.shape(grid_images)}")

    digits = sorted(int(d) for d in np.unique(test_labels))
    data = {
        "digits": digits,
        "colours": [TAB10[k % len(TAB10)] for k in range(len(digits))],
        "points": [round(float(v), 4) for v in test_latents.ravel()],      # z1, z2, z1, z2, ...
        "labels": [int(d) for d in test_labels],
        "grid_z1": [float(v) for v in grid_z1],
        "grid_z2": [float(v) for v in grid_z2],
        # n2 x n1 x 28 x 28 grey levels, row-major, base64
        "images": base64.b64encode(images_to_uint8(grid_images).tobytes()).decode("ascii"),
    }
    legend = "".join(f'<span class="key"><i style="background:{colour}"></i>digit {digit}</span>'
                     for digit, colour in zip(digits, data["colours"]))
    data_json = json.dumps(data, separators=(",", ":"), allow_nan=False)   # NaN latents: an error, not a broken page
    page = resources.files(__package__).joinpath(PAGE_TEMPLATE).read_text(encoding="utf-8")
    return (page.replace("__N1__", str(n1)).replace("__N2__", str(n2))
            .replace("__LEGEND__", legend).replace("__DATA__", data_json))
