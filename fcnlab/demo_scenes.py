"""Synthetic segmentation scenes: a real MNIST digit camouflaged among clutter painted like it.

Each scene is painted back to front on an S x S canvas:

    1. background   a calm paint (flat or mottled) over the whole canvas
    2. clutter      6-12 strokes, arcs, rings, blobs and fragments of other digits, each in
                    one of the scene's palette paints
    3. decoys       1-2 more clutter shapes wearing the digit's own paint
    4. the digit    one MNIST digit enlarged to 50-90 % of S at a random place (kept inside);
                    its paint is the one of a few random paints that differs most from what
                    lies under it, so a person can still see it
    5. scratches    0-2 thin lines across everything; where they cross the digit they cut
                    the mask

A paint is two random colours mixed by a flat, striped, checked or mottled pattern; the
digit's, the decoys' and the clutter's paints all come from that one distribution, and
sensor noise goes on top. So a pixel's colour or brightness says nothing about whether it
belongs to the digit (the best intensity threshold does no better than calling everything
foreground); only shape and context do, which is what a segmentation network must learn.

The mask is the enlarged digit where its ink is above 50 %, minus the scratches. Everything
is drawn with NumPy and Pillow from one `np.random.Generator`: a seed gives the same bytes.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

DIGIT_SCALE = (0.5, 0.9)     # the digit's longer side, as a fraction of the image side
N_CLUTTER = (6, 12)          # clutter shapes per scene (inclusive range), each in a palette paint
N_DECOYS = (1, 2)            # further clutter shapes wearing the digit's own paint
FRAGMENT_PROBABILITY = 0.15  # chance a clutter shape is a piece of another digit (else a stroke)
N_SCRATCHES = (0, 2)         # thin lines drawn over the digit
PALETTE_SIZE = 3             # paints of the ordinary clutter
N_PAINT_CANDIDATES = 4       # the digit wears the most visible of this many random paints
STROKE_WIDTH = (0.03, 0.09)  # clutter line width, as a fraction of the image side (MNIST-like)
NOISE_STD = 6.0              # sensor noise, in grey levels of 0..255


def render_scenes(rng: np.random.Generator, digits: np.ndarray, size: int):
    """One scene per digit: (N x S x S x 3 uint8 images, N x S x S uint8 masks in {0, 1}).

    `digits` (N x 28 x 28 uint8) are the foreground digits; the clutter's digit fragments
    are cut from the same array, so a split never shows digits of another split.
    """
    images = np.empty((len(digits), size, size, 3), np.uint8)
    masks = np.empty((len(digits), size, size), np.uint8)
    for i, digit in enumerate(digits):
        images[i], masks[i] = render_scene(rng, digit, digits, size)
    return images, masks


def render_scene(rng: np.random.Generator, digit: np.ndarray, fragment_digits: np.ndarray,
                 size: int):
    """One scene: (S x S x 3 uint8 image, S x S uint8 mask) for one 28 x 28 digit."""
    mask = _placed(rng, digit_shape(rng, digit, size), size)     # S x S bool, where the digit goes
    canvas = random_paint(rng, size, BACKGROUND_PATTERNS)       # S x S x 3 float32

    palette = [random_paint(rng, size) for _ in range(PALETTE_SIZE)]
    for _ in range(_count(rng, N_CLUTTER)):
        _paint(canvas, random_clutter(rng, fragment_digits, size), palette[rng.integers(PALETTE_SIZE)])

    digit_paint = _most_visible_paint(rng, size, canvas, mask)
    for _ in range(_count(rng, N_DECOYS)):
        _paint(canvas, random_clutter(rng, fragment_digits, size), digit_paint)
    _paint(canvas, mask, digit_paint)

    for _ in range(_count(rng, N_SCRATCHES)):
        scratch = _scratch(rng, size)
        _paint(canvas, scratch, palette[rng.integers(PALETTE_SIZE)])
        mask &= ~scratch

    canvas += rng.normal(0.0, NOISE_STD, canvas.shape).astype(np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8)


# --- Paints: textures drawn from one distribution ---------------------------------------------


def random_paint(rng: np.random.Generator, size: int, patterns=None) -> np.ndarray:
    """S x S x 3 float32 texture: two random colours mixed by a random pattern."""
    patterns = patterns or PATTERNS
    colour_a, colour_b = rng.uniform(0.0, 255.0, (2, 3)).astype(np.float32)
    pattern = patterns[rng.integers(len(patterns))]
    weight = pattern(rng, size)                          # S x S in [0, 1]
    return colour_a + (colour_b - colour_a) * weight[..., None]


def _flat(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.zeros((size, size), np.float32)


def _stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Straight stripes at a random angle, shaded by a triangle wave."""
    y, x = _pixel_grid(size)
    angle = rng.uniform(0.0, np.pi)
    period_px = rng.uniform(0.03, 0.1) * size
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period_px + rng.uniform()
    return np.abs(2.0 * (phase % 1.0) - 1.0).astype(np.float32)


def _checks(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _pixel_grid(size)
    cell_px = rng.uniform(0.04, 0.12) * size
    return ((x // cell_px + y // cell_px) % 2).astype(np.float32)


def _mottled(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth blotches: a coarse random grid enlarged bilinearly."""
    cells = int(rng.integers(3, 11))
    coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.float32)


PATTERNS = (_flat, _stripes, _checks, _mottled)   # paints of the digit and the clutter
BACKGROUND_PATTERNS = (_flat, _mottled)            # calmer, so shapes stand out against it


def _most_visible_paint(rng: np.random.Generator, size: int, canvas: np.ndarray,
                        where: np.ndarray) -> np.ndarray:
    """Of a few random paints, the one differing most from the canvas pixels `where` it will go."""
    candidates = [random_paint(rng, size) for _ in range(N_PAINT_CANDIDATES)]
    contrast = [np.abs(paint[where] - canvas[where]).mean() for paint in candidates]
    return candidates[int(np.argmax(contrast))]


@functools.cache
def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column coordinates, each S x S float32 (cached: read-only)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    y.flags.writeable = x.flags.writeable = False
    return y, x


def _paint(canvas: np.ndarray, where: np.ndarray, paint: np.ndarray) -> None:
    canvas[where] = paint[where]


# --- Shapes: S x S boolean masks --------------------------------------------------------------


def random_clutter(rng: np.random.Generator, fragment_digits: np.ndarray, size: int) -> np.ndarray:
    """Mostly a stroke shape; sometimes a fragment of one of `fragment_digits`."""
    if rng.random() < FRAGMENT_PROBABILITY:
        return digit_fragment(rng, fragment_digits[rng.integers(len(fragment_digits))], size)
    return random_stroke_shape(rng, size)


def random_stroke_shape(rng: np.random.Generator, size: int) -> np.ndarray:
    """A polyline, arc, ring or blob, with strokes about as wide as an enlarged digit's."""
    layer = Image.new("L", (size, size))
    draw = ImageDraw.Draw(layer)
    width = max(1, round(rng.uniform(*STROKE_WIDTH) * size))
    SHAPES[rng.integers(len(SHAPES))](draw, rng, size, width)
    return np.asarray(layer) > 0


def _polyline(draw, rng, size, width):
    points = [tuple(p) for p in rng.uniform(0, size, (int(rng.integers(2, 5)), 2)).tolist()]
    draw.line(points, fill=255, width=width, joint="curve")


def _arc(draw, rng, size, width):
    start = rng.uniform(0, 360)
    draw.arc(_random_box(rng, size), start, start + rng.uniform(90, 300), fill=255, width=width)


def _ring(draw, rng, size, width):
    draw.ellipse(_random_box(rng, size), outline=255, width=width)


def _blob(draw, rng, size, width):
    """A filled random polygon around a centre (a few times a stroke wide)."""
    centre = rng.uniform(0, size, 2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 8))))
    radii = rng.uniform(1.0, 3.0, len(angles)) * width
    points = centre + radii[:, None] * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    draw.polygon([tuple(p) for p in points.tolist()], fill=255)


SHAPES = (_polyline, _arc, _ring, _blob)


def _random_box(rng: np.random.Generator, size: int) -> list[float]:
    """[x0, y0, x1, y1] of a box 16-60 % of the image wide, centred anywhere."""
    centre = rng.uniform(0, size, 2)
    half = rng.uniform(0.08, 0.3, 2) * size
    return [*(centre - half).tolist(), *(centre + half).tolist()]


def _scratch(rng: np.random.Generator, size: int) -> np.ndarray:
    """A thin straight line right across the image."""
    layer = Image.new("L", (size, size))
    y0, y1 = rng.uniform(0, size, 2).tolist()
    ImageDraw.Draw(layer).line([(0, y0), (size, y1)], fill=255, width=max(1, size // 64))
    shape = np.asarray(layer) > 0
    return shape.T.copy() if rng.random() < 0.5 else shape     # horizontal-ish or vertical-ish


# --- Digits -----------------------------------------------------------------------------------


def digit_shape(rng: np.random.Generator, digit: np.ndarray, size: int) -> np.ndarray:
    """h x w bool: the digit's ink box enlarged (bilinear) to 40-80 % of S, ink above 50 %."""
    rows, cols = np.nonzero(digit)
    ink = digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1] if len(rows) else digit
    scale = rng.uniform(*DIGIT_SCALE) * size / max(ink.shape)
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    enlarged = Image.fromarray(ink).resize((width, height), Image.BILINEAR)   # h x w uint8
    return np.asarray(enlarged) > 127


def digit_fragment(rng: np.random.Generator, digit: np.ndarray, size: int) -> np.ndarray:
    """S x S bool: part of an enlarged digit, cut by a random line near its middle."""
    shape = digit_shape(rng, digit, size)
    y, x = np.indices(shape.shape)
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.15, 0.15) * max(shape.shape)
    side = ((x - shape.shape[1] / 2) * np.cos(angle) + (y - shape.shape[0] / 2) * np.sin(angle))
    return _placed(rng, shape & (side > offset), size)


def _placed(rng: np.random.Generator, shape: np.ndarray, size: int) -> np.ndarray:
    """S x S bool with the h x w `shape` at a random position, wholly inside."""
    canvas = np.zeros((size, size), bool)
    top = int(rng.integers(size - shape.shape[0] + 1))
    left = int(rng.integers(size - shape.shape[1] + 1))
    canvas[top:top + shape.shape[0], left:left + shape.shape[1]] = shape
    return canvas


def _count(rng: np.random.Generator, low_high: tuple[int, int]) -> int:
    return int(rng.integers(low_high[0], low_high[1], endpoint=True))
