"""Figures of the CAE half: the seed's plots, generalised (Matplotlib, returned as Figures)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reconstruction_figure(images: np.ndarray, reconstructions: np.ndarray, labels=None):
    """Top row: input test images; bottom row: their reconstructions (the seed's figure, n wide)."""
    n = len(images)
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(images[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        axes[1, i].imshow(reconstructions[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        if labels is not None:
            axes[0, i].set_title(f"digit {labels[i]}", fontsize=9)
    axes[0, 0].set_ylabel("input")
    axes[1, 0].set_ylabel("reconstructed")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def _scatter_digits(ax, latents, labels):
    for digit in np.unique(labels):
        chosen = labels == digit
        ax.scatter(latents[chosen, 0], latents[chosen, 1], s=10, alpha=0.7, label=str(digit))
    ax.set_xlabel("Z1")
    ax.set_ylabel("Z2")
    ax.axis("equal")


def latent_scatter_figure(latents: np.ndarray, labels: np.ndarray):
    """The seed's "Latent Space" scatter, one colour per digit."""
    fig, ax = plt.subplots(figsize=(6, 6))
    _scatter_digits(ax, latents, labels)
    ax.set_title("Latent space (test images)")
    ax.legend(title="digit")
    fig.tight_layout()
    return fig


def decoded_points_figure(latents, labels, points: np.ndarray, decoded: np.ndarray):
    """The seed's "Generated Fake Image" figure for several points: scatter with the points
    marked and numbered, then one decoded image per point."""
    n = len(points)
    fig = plt.figure(figsize=(5 + 2.2 * n, 4.5))
    grid = fig.add_gridspec(1, n + 2)
    ax = fig.add_subplot(grid[0, :2])
    _scatter_digits(ax, latents, labels)
    ax.scatter(points[:, 0], points[:, 1], c="k", marker="o", s=120, label="decoded points")
    for i, (z1, z2) in enumerate(points):
        ax.annotate(str(i), (z1, z2), color="w", ha="center", va="center", fontsize=8)
    ax.legend(loc="best", fontsize=8)
    ax.set_title("Latent space")
    for i in range(n):
        image_ax = fig.add_subplot(grid[0, i + 2])
        image_ax.imshow(decoded[i], cmap="gray")
        image_ax.set_title(f"{i}: ({points[i, 0]:.2f}, {points[i, 1]:.2f})", fontsize=9)
        image_ax.set_xticks([])
        image_ax.set_yticks([])
    fig.tight_layout()
    return fig


def manifold_figure(z1_values: np.ndarray, z2_values: np.ndarray, decoded: np.ndarray):
    """Decoded images of an n x n latent grid tiled into one picture (z2 decreasing downwards)."""
    n1, n2 = len(z1_values), len(z2_values)
    tiles = decoded.reshape(n2, n1, 28, 28).transpose(0, 2, 1, 3).reshape(n2 * 28, n1 * 28)
    fig, ax = plt.subplots(figsize=(7, 7))
    extent = (z1_values[0], z1_values[-1], z2_values[-1], z2_values[0])
    ax.imshow(tiles, cmap="gray", extent=extent, aspect="auto")
    ax.set_xlabel("Z1")
    ax.set_ylabel("Z2")
    ax.set_title(f"Decoder manifold ({n1} x {n2} grid)")
    fig.tight_layout()
    return fig
