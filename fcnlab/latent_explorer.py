"""An interactive latent-space explorer: one self-contained HTML page, no network needed.

    test latents + labels ──► scatter on a <canvas>, coloured by digit (the scatter PNG's colours)
    n x n latent grid ──decoder──► n*n 28x28 images, embedded as base64 uint8

Moving the pointer over the scatter (or clicking, which pins the point) shows the decoded image
of the *nearest* grid point beside it, with the pointer's and the grid point's coordinates.
The page is plain HTML, CSS and JavaScript in one file: no CDN, no external script or font.

Size: the images dominate, n*n*784 bytes, 4/3 of that in base64; a 32 x 32 grid gives a page
of about 1.1 MB. The same inputs give the same bytes (no timestamps; floats written by `repr`).
"""

from __future__ import annotations

import base64
import json

import numpy as np

IMAGE_SIZE = 28

# Matplotlib's default colour cycle (tab10): the k-th digit present gets the k-th colour, as in
# latent_scatter_figure, so the page and the scatter PNG colour each digit the same way.
TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
         "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def explorer_grid(latents: np.ndarray, n: int, margin: float = 0.005,
                  padding: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """An n x n grid over the latent cloud: its central 99 % per axis, widened by 5 % each side.

    Returns (z1 values, z2 values), each of length n; z2 runs top (high) to bottom (low), the
    order of `fcnlab.latent.latent_grid`, so image k of the grid is (z1[k % n], z2[k // n]).
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
    return (_PAGE.replace("__N1__", str(n1)).replace("__N2__", str(n2))
            .replace("__LEGEND__", legend).replace("__DATA__", data_json))


# A raw string: backslashes reach the JavaScript as written.
_PAGE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>CAE latent space explorer</title>
<style>
  body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
         margin: 24px; background: #fafafa; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  p.hint { margin: 0 0 16px; color: #555; max-width: 820px; }
  .row { display: flex; gap: 28px; align-items: flex-start; flex-wrap: wrap; }
  figure { margin: 0; }
  canvas#scatter { background: #fff; border: 1px solid #ddd; cursor: crosshair; display: block; }
  canvas#decoded { border: 1px solid #999; background: #000; display: block; }
  .legend { margin-top: 6px; }
  .key { margin-right: 14px; white-space: nowrap; }
  .key i { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 5px; }
  .side { width: 300px; }
  .side p { margin: 8px 0 0; font-variant-numeric: tabular-nums; }
  #mode { font-weight: 600; }
  #cell { white-space: pre-line; }
  .muted { color: #666; }
</style>
</head>
<body>
<h1>CAE latent space explorer</h1>
<p class="hint">Each dot is a test digit's 2-D latent code. Move the pointer over the plot, or click
to pin a point: the right shows what the decoder draws there (the decode of the nearest point of a
__N1__ &times; __N2__ grid precomputed across the plot).</p>
<div class="row">
  <figure>
    <canvas id="scatter"></canvas>
    <figcaption class="legend">__LEGEND__</figcaption>
  </figure>
  <div class="side">
    <canvas id="decoded"></canvas>
    <p id="mode">clicked point</p>
    <p id="coords">z = (&ndash;, &ndash;)</p>
    <p id="cell" class="muted">nearest grid point</p>
  </div>
</div>
<script id="explorer-data" type="application/json">__DATA__</script>
<script>
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("explorer-data").textContent);
  const z1 = data.grid_z1, z2 = data.grid_z2, n1 = z1.length, n2 = z2.length, SIDE = 28;
  const raw = atob(data.images);
  const images = new Uint8Array(raw.length);
  for (let k = 0; k < raw.length; k++) images[k] = raw.charCodeAt(k);

  // Plot area in CSS pixels: the grid's cells, one grid point at each cell's centre.
  const PLOT = 420, LEFT = 56, TOP = 12, RIGHT = 12, BOTTOM = 44, IMAGE_PX = 280;
  const step1 = (z1[n1 - 1] - z1[0]) / (n1 - 1), step2 = (z2[0] - z2[n2 - 1]) / (n2 - 1);
  const lo1 = z1[0] - step1 / 2, hi1 = z1[n1 - 1] + step1 / 2;
  const hi2 = z2[0] + step2 / 2, lo2 = z2[n2 - 1] - step2 / 2;

  function latentToPixel(a, b) {   // latent (z1, z2) -> [x, y] in CSS px from the canvas's top left
    return [LEFT + (a - lo1) / (hi1 - lo1) * PLOT, TOP + (hi2 - b) / (hi2 - lo2) * PLOT];
  }
  function pixelToLatent(x, y) {
    return [lo1 + (x - LEFT) / PLOT * (hi1 - lo1), hi2 - (y - TOP) / PLOT * (hi2 - lo2)];
  }
  function nearestCell(a, b) {      // [i, j]: column along z1, row from the top along z2
    const clamp = (v, n) => Math.min(n - 1, Math.max(0, v));
    return [clamp(Math.round((a - z1[0]) / step1), n1), clamp(Math.round((z2[0] - b) / step2), n2)];
  }

  function setup(canvas, width, height) {
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    return ctx;
  }

  function ticks(lo, hi) {          // about 6 round numbers between lo and hi
    const rough = (hi - lo) / 6, magnitude = Math.pow(10, Math.floor(Math.log10(rough)));
    const step = [1, 2, 5, 10].map(m => m * magnitude).find(s => s >= rough);
    const values = [];
    for (let k = Math.ceil(lo / step); k * step <= hi; k++) values.push(k * step);
    return { values: values, decimals: Math.max(0, -Math.floor(Math.log10(step))) };
  }

  // The scatter and its axes, drawn once into an offscreen layer.
  const scatter = document.getElementById("scatter");
  const width = LEFT + PLOT + RIGHT, height = TOP + PLOT + BOTTOM;
  const ctx = setup(scatter, width, height);
  const base = document.createElement("canvas");
  const baseCtx = setup(base, width, height);
  baseCtx.fillStyle = "#fff";
  baseCtx.fillRect(0, 0, width, height);
  baseCtx.save();
  baseCtx.beginPath();
  baseCtx.rect(LEFT, TOP, PLOT, PLOT);
  baseCtx.clip();
  baseCtx.globalAlpha = 0.7;
  data.digits.forEach(function (digit, k) {
    baseCtx.fillStyle = data.colours[k];
    for (let p = 0; p < data.labels.length; p++) {
      if (data.labels[p] !== digit) continue;
      const xy = latentToPixel(data.points[2 * p], data.points[2 * p + 1]);
      baseCtx.beginPath();
      baseCtx.arc(xy[0], xy[1], 2.6, 0, 2 * Math.PI);
      baseCtx.fill();
    }
  });
  baseCtx.restore();
  baseCtx.strokeStyle = "#444";
  baseCtx.strokeRect(LEFT + 0.5, TOP + 0.5, PLOT - 1, PLOT - 1);
  baseCtx.fillStyle = "#333";
  baseCtx.font = "12px system-ui, sans-serif";
  const t1 = ticks(lo1, hi1), t2 = ticks(lo2, hi2);
  baseCtx.textAlign = "center";
  baseCtx.textBaseline = "top";
  t1.values.forEach(function (v) {
    const x = latentToPixel(v, 0)[0];
    baseCtx.fillRect(x - 0.5, TOP + PLOT, 1, 5);
    baseCtx.fillText(v.toFixed(t1.decimals), x, TOP + PLOT + 7);
  });
  baseCtx.textAlign = "right";
  baseCtx.textBaseline = "middle";
  t2.values.forEach(function (v) {
    const y = latentToPixel(0, v)[1];
    baseCtx.fillRect(LEFT - 5, y - 0.5, 5, 1);
    baseCtx.fillText(v.toFixed(t2.decimals), LEFT - 8, y);
  });
  baseCtx.font = "13px system-ui, sans-serif";
  baseCtx.textAlign = "center";
  baseCtx.fillText("z1", LEFT + PLOT / 2, TOP + PLOT + 32);
  baseCtx.save();
  baseCtx.translate(14, TOP + PLOT / 2);
  baseCtx.rotate(-Math.PI / 2);
  baseCtx.fillText("z2", 0, 0);
  baseCtx.restore();

  // The decoded image: 28 x 28 grey levels, scaled up without smoothing.
  const decoded = document.getElementById("decoded");
  const imageCtx = setup(decoded, IMAGE_PX, IMAGE_PX);
  const small = document.createElement("canvas");
  small.width = small.height = SIDE;
  const smallCtx = small.getContext("2d");
  const pixels = smallCtx.createImageData(SIDE, SIDE);

  let pinned = null;
  function show(a, b, mode) {
    const cell = nearestCell(a, b), i = cell[0], j = cell[1];
    const offset = (j * n1 + i) * SIDE * SIDE;
    for (let k = 0; k < SIDE * SIDE; k++) {
      const grey = images[offset + k];
      pixels.data[4 * k] = pixels.data[4 * k + 1] = pixels.data[4 * k + 2] = grey;
      pixels.data[4 * k + 3] = 255;
    }
    smallCtx.putImageData(pixels, 0, 0);
    imageCtx.imageSmoothingEnabled = false;
    imageCtx.drawImage(small, 0, 0, IMAGE_PX, IMAGE_PX);

    ctx.drawImage(base, 0, 0, width, height);
    const corner = latentToPixel(z1[i] - step1 / 2, z2[j] + step2 / 2);
    ctx.strokeStyle = "rgba(0, 0, 0, 0.4)";
    ctx.lineWidth = 1;
    ctx.strokeRect(corner[0], corner[1], PLOT / n1, PLOT / n2);
    if (pinned) {                   // a black cross with a white halo at the clicked point
      const xy = latentToPixel(pinned[0], pinned[1]);
      [["#fff", 4], ["#000", 2]].forEach(function (pen) {
        ctx.strokeStyle = pen[0];
        ctx.lineWidth = pen[1];
        ctx.beginPath();
        ctx.moveTo(xy[0] - 9, xy[1]); ctx.lineTo(xy[0] + 9, xy[1]);
        ctx.moveTo(xy[0], xy[1] - 9); ctx.lineTo(xy[0], xy[1] + 9);
        ctx.stroke();
      });
    }
    document.getElementById("mode").textContent = mode;
    document.getElementById("coords").textContent = "z = (" + a.toFixed(3) + ", " + b.toFixed(3) + ")";
    document.getElementById("cell").textContent = "nearest grid point [" + i + ", " + j + "]\nat ("
      + z1[i].toFixed(3) + ", " + z2[j].toFixed(3) + ")";
  }

  function eventLatent(event) {     // null outside the plot area
    const rect = scatter.getBoundingClientRect();
    const x = event.clientX - rect.left, y = event.clientY - rect.top;
    if (x < LEFT || x > LEFT + PLOT || y < TOP || y > TOP + PLOT) return null;
    return pixelToLatent(x, y);
  }
  scatter.addEventListener("mousemove", function (event) {
    const z = eventLatent(event);
    if (z) show(z[0], z[1], "pointer");
  });
  scatter.addEventListener("click", function (event) {
    const z = eventLatent(event);
    if (!z) return;
    pinned = z;
    show(z[0], z[1], "clicked point");
  });
  scatter.addEventListener("mouseleave", function () {
    show(pinned[0], pinned[1], "clicked point");
  });

  // Start pinned at the median test latent, inside the cloud.
  const median = function (values) {
    const sorted = values.slice().sort((x, y) => x - y);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const first = data.points.filter((v, k) => k % 2 === 0), second = data.points.filter((v, k) => k % 2 === 1);
  pinned = [median(first), median(second)];
  show(pinned[0], pinned[1], "clicked point");

  window.latentToPixel = latentToPixel;
  window.pixelToLatent = pixelToLatent;
})();
</script>
</body>
</html>
"""
