"""Synthetic segmentation scenes: a real MNIST digit hidden among clutter in the same inks.

Each scene has two random inks, a and b, and is painted back to front on an S x S canvas:

    1. background   a calm paint (flat or mottled, other random colours) over the whole canvas
    2. clutter      6-12 strokes, arcs, rings, blobs and fragments of other digits, each
                    painted flat in ink a or ink b, or in smooth blotches of a and b
    3. the digit    one MNIST digit enlarged to 50-90 % of S at a random place (kept inside),
                    painted in fine stripes or checks of inks a and b
    4. scratches    0-2 thin lines across everything, in clutter paint; where they cross the
                    digit they cut the mask

Sensor noise goes on top. The digit's pixels have exactly the colours of the clutter around
it, so a pixel's colour or brightness says nothing about whether it belongs to the digit (the
best intensity threshold does no better than calling everything foreground). What gives the
digit away is its fine texture and its shape: local patterns, which is what a convolutional
segmentation network learns.

The mask is the enlarged digit where its ink is above 50 %, minus the scratches. Everything
is drawn with NumPy and Pillow from one `np.random.Generator`: a seed gives the same bytes.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

DIGIT_SCALE = (0.5, 0.9)     # the digit's longer side, as a fraction of the image side
N_CLUTTER = (6, 12)          # clutter shapes per scene (inclusive range)
FRAGMENT_PROBABILITY = 0.15  # chance a clutter shape is a piece of another digit (else a stroke)
N_SCRATCHES = (0, 2)         # thin lines drawn over the digit
FINE_PERIOD = (0.05, 0.09)   # the digit's stripe/check period, as a fraction of the image side
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

    colour_a, colour_b = rng.uniform(0.0, 255.0, (2, 3)).astype(np.float32)   # the scene's two inks
    for _ in range(_count(rng, N_CLUTTER)):
        _paint(canvas, random_clutter(rng, fragment_digits, size), clutter_paint(rng, size, colour_a, colour_b))
    _paint(canvas, mask, digit_paint(rng, size, colour_a, colour_b))

    for _ in range(_count(rng, N_SCRATCHES)):
        scratch = _scratch(rng, size)
        _paint(canvas, scratch, clutter_paint(rng, size, colour_a, colour_b))
        mask &= ~scratch

    canvas += rng.normal(0.0, NOISE_STD, canvas.shape).astype(np.float32)
    image = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return image, mask.astype(np.uint8)


def digit_paint(rng: np.random.Generator, size: int, colour_a, colour_b) -> np.ndarray:
    """The digit's paint: the scene's two inks in fine stripes or checks."""
    pattern = FINE_PATTERNS[rng.integers(len(FINE_PATTERNS))]
    return _mix(colour_a, colour_b, pattern(rng, size))


def clutter_paint(rng: np.random.Generator, size: int, colour_a, colour_b) -> np.ndarray:
    """A clutter shape's paint: the same two inks, but flat (one ink) or smoothly blotched."""
    if rng.random() < 0.5:
        weight = np.full((size, size), float(rng.integers(2)), np.float32)   # ink a or ink b
    else:
        weight = _mottled(rng, size)
    return _mix(colour_a, colour_b, weight)


def _mix(colour_a, colour_b, weight: np.ndarray) -> np.ndarray:
    return colour_a + (colour_b - colour_a) * weight[..., None]


# --- Paints: textures drawn from one distribution ---------------------------------------------


def random_paint(rng: np.random.Generator, size: int, patterns) -> np.ndarray:
    """S x S x 3 float32 texture: two random colours mixed by one of `patterns`."""
    colour_a, colour_b = rng.uniform(0.0, 255.0, (2, 3)).astype(np.float32)
    pattern = patterns[rng.integers(len(patterns))]
    weight = pattern(rng, size)                          # S x S in [0, 1]
    return colour_a + (colour_b - colour_a) * weight[..., None]


def _flat(rng: np.random.Generator, size: int) -> np.ndarray:
    return np.zeros((size, size), np.float32)


def _mottled(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth blotches: a coarse random grid enlarged bilinearly."""
    cells = int(rng.integers(3, 11))
    coarse = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    return np.asarray(coarse.resize((size, size), Image.BILINEAR), dtype=np.float32)


def _fine_stripes(rng: np.random.Generator, size: int) -> np.ndarray:
    """Hard-edged stripes a few pixels apart at a random angle."""
    y, x = _pixel_grid(size)
    angle = rng.uniform(0.0, np.pi)
    period_px = max(3.0, rng.uniform(*FINE_PERIOD) * size)
    phase = (x * np.cos(angle) + y * np.sin(angle)) / period_px + rng.uniform()
    return (phase % 1.0 < 0.5).astype(np.float32)


def _fine_checks(rng: np.random.Generator, size: int) -> np.ndarray:
    y, x = _pixel_grid(size)
    cell_px = max(2.0, rng.uniform(*FINE_PERIOD) * size / 2)
    return ((x // cell_px + y // cell_px) % 2).astype(np.float32)


BACKGROUND_PATTERNS = (_flat, _mottled)            # calm, so shapes stand out against it
FINE_PATTERNS = (_fine_stripes, _fine_checks)      # the digit's texture


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
