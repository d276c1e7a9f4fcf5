"""Generated folders that stand in for users' own data where the real sets hide geometry bugs.

    python bench/own_data.py thin /tmp/thin          # curved lines 1-4 px wide, odd mixed sizes
    python bench/own_data.py blobs-584x565 /tmp/b    # every image 584 x 565 (H x W), like retinal sets

Each folder has images/NAME.png and masks/NAME.png (0 background, 255 foreground), the layout
of the `folder` source. Everything is drawn from a seed, so a folder is the same on every run.

    thin            40 images of random sizes 289..511 x 301..509 px: smooth uneven illumination,
                    texture and noise, with dark curved lines 1-4 px wide covering 5-10 % of the
                    pixels (a stand-in for vessels, cracks or membranes)
    blobs-HxW       40 images all H x W: lighter textured ellipses (about 20 % of the pixels) on a
                    textured background; H x W one of 584x565, 333x500, 500x333 (or any H x W)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

N_IMAGES = 40


def smooth_noise(rng, height: int, width: int, cells: int) -> np.ndarray:
    """H x W float32 noise in [0, 1] that varies over about `cells` cells per side (bicubic)."""
    grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC)).clip(0, 1)


def textured_background(rng, height: int, width: int) -> np.ndarray:
    """H x W float32 grey levels 0..255: a lighting gradient, blotches, fine texture and noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = (np.cos(angle) * yy / height + np.sin(angle) * xx / width)      # about -1..1
    return (120 + 40 * gradient + 50 * (smooth_noise(rng, height, width, 4) - 0.5)
            + 25 * (smooth_noise(rng, height, width, 40) - 0.5) + rng.normal(0, 6, (height, width)))


def curve_points(rng, height: int, width: int) -> list[tuple[float, float]]:
    """A smooth random walk with momentum from a random point, until it leaves the image."""
    y, x = rng.uniform(0, height), rng.uniform(0, width)
    heading, points = rng.uniform(0, 2 * np.pi), []
    for _ in range(400):
        points.append((x, y))
        heading += rng.normal(0, 0.12)
        y, x = y + 3 * np.sin(heading), x + 3 * np.cos(heading)
        if not (-5 < y < height + 5 and -5 < x < width + 5):
            break
    return points


def thin_structure_scene(rng) -> tuple[np.ndarray, np.ndarray]:
    height, width = int(rng.integers(289, 512)), int(rng.integers(301, 510))
    target = rng.uniform(0.05, 0.10)
    mask_image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_image)
    while np.count_nonzero(np.asarray(mask_image)) < target * height * width:
        draw.line(curve_points(rng, height, width), fill=255, width=int(rng.integers(1, 5)), joint="curve")
    mask = np.asarray(mask_image) > 0
    contrast = rng.uniform(25, 45)                              # lines darker than their surroundings
    image = textured_background(rng, height, width) - contrast * mask
    return np.repeat(image.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1), mask


def blob_scene(rng, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    mask_image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_image)
    while np.count_nonzero(np.asarray(mask_image)) < 0.2 * height * width:
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry, rx = rng.uniform(0.04, 0.15) * height, rng.uniform(0.04, 0.15) * width
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
    mask = np.asarray(mask_image) > 0
    background = textured_background(rng, height, width)
    tint = rng.uniform(0.6, 1.4, 3)                             # a colour cast per image
    image = (background + 45 * mask)[..., None] * tint
    return image.clip(0, 255).astype(np.uint8), mask


def write_folder(out: Path, kind: str, seed: int = 0) -> Path:
    """Write the folder `kind` (see the module docstring) into `out`; return `out`."""
    rng = np.random.default_rng(seed)
    if kind == "thin":
        scenes = (thin_structure_scene(rng) for _ in range(N_IMAGES))
    elif kind.startswith("blobs-"):
        height, width = (int(side) for side in kind.removeprefix("blobs-").split("x"))
        scenes = (blob_scene(rng, height, width) for _ in range(N_IMAGES))
    else:
        raise SystemExit(f"unknown kind {kind!r}: use thin or blobs-HxW")
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for index, (image, mask) in enumerate(scenes):
        Image.fromarray(image).save(out / "images" / f"{index:03d}.png")
        Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"{index:03d}.png")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", help="thin | blobs-HxW (e.g. blobs-584x565)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(write_folder(args.out, args.kind, args.seed))
