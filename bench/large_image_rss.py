"""Very large images through `fcnlab segment`: wall time and peak RSS, and the mask checked
against the same image segmented in pieces.

    nice python bench/large_image_rss.py                        # 8000 x 8000 and 16000 x 16000
    nice python bench/large_image_rss.py --sides 2048           # a quick run
    nice python bench/large_image_rss.py --model models/fcn/fcn8s_vgg16.keras   # a trained model

For each side S it writes a generated S x S RGB PNG (smooth stripes and noise), then runs, each
in its own subprocess whose peak RSS is read with `os.wait4`:

    whole     `fcnlab segment IMAGE --native`: the image at its own size, which FCN-8s predicts
              in overlapping tiles (`fcnlab.seg.tiling`); the command also holds the image, its
              probabilities, mask and overlay (about 13 bytes a pixel)
    pieces    `fcnlab segment` on the image cut into `--pieces` x `--pieces` PNGs, each piece a
              core on the 32-px grid plus `EXACT_MARGIN_PX` of the image around it (the context
              that makes a tile's core equal to the whole image's, see fcnlab.seg.tiling)

and compares the whole image's mask with the piece masks' cores stitched together: they agree
except where a probability sits within float rounding of the threshold. The model is `--model`,
or by default a random-weight FCN-8s of the default size (head width 512). fcnlab reads at most
`fcnlab.core.io.MAX_IMAGE_PIXELS` (100 megapixels) an image and no command lifts that; for a
larger side this benchmark raises the cap inside its `fcnlab segment` subprocess only (the
table marks it). Prints a table and appends a line to bench/results/large_image_rss.jsonl.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from machine import commit, cpu_flags                # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fcnlab.core.io import MAX_IMAGE_PIXELS  # noqa: E402
from fcnlab.seg.tiling import EXACT_MARGIN_PX  # noqa: E402

GRID_PX = 32               # pieces start on the grid FCN-8s' pools see
BAND_ROWS = 1024           # rows generated at a time
# `fcnlab segment` with the pixel cap raised to argv[1] (for images over MAX_IMAGE_PIXELS only)
SEGMENT_OVER_THE_CAP = ("import sys, PIL.Image, fcnlab.core.io as io; "
                        "io.MAX_IMAGE_PIXELS = PIL.Image.MAX_IMAGE_PIXELS = int(sys.argv[1]); "
                        "from fcnlab.cli import main; sys.exit(main(sys.argv[2:]))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sides", default="8000,16000", help="comma-separated image sides, px")
    parser.add_argument("--pieces", type=int, default=2, help="the image is cut into pieces x pieces")
    parser.add_argument("--model", type=Path, help="a .keras FCN-8s (default: random weights, head width 512)")
    parser.add_argument("--precision", default="auto", help="fcnlab segment --precision")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--workdir", type=Path, help="where images and masks go (default: a temporary folder)")
    args = parser.parse_args()
    Image.MAX_IMAGE_PIXELS = None            # this script reads and writes its own large images
    with tempfile.TemporaryDirectory(prefix="fcnlab-large-", dir=args.workdir) as tmp:
        work = Path(tmp)
        model = args.model or random_model(work / "fcn8s_random.keras")
        runs = [bench_side(int(side), model, work, args) for side in args.sides.split(",") if side.strip()]
    report = {"date": datetime.date.today().isoformat(), "commit": commit(), "cpu_flags": cpu_flags(), "model": str(args.model or "random"),
              "precision": args.precision, "pieces": args.pieces, "margin_px": EXACT_MARGIN_PX, "runs": runs}
    out = ROOT / "bench" / "results" / "large_image_rss.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a") as results:                     # one line per run; earlier runs are kept
        results.write(json.dumps(report) + "\n")
    print_table(report)
    print(f"appended to {out.relative_to(ROOT)}")


def random_model(path: Path) -> Path:
    """A random-weight FCN-8s of the default size (head width 512), saved in a subprocess."""
    code = ("from fcnlab.core.quiet import quiet_tensorflow; quiet_tensorflow(); "
            "import sys, keras; from fcnlab.core.io import save_model; from fcnlab.seg.model import fcn8s_vgg16; "
            "keras.utils.set_random_seed(0); "
            "save_model(fcn8s_vgg16(n_classes=2, head_width=512, encoder_weights='none'), sys.argv[1])")
    done = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"building the random model failed:\n{done.stderr[-3000:]}")
    return path


def bench_side(side: int, model: Path, work: Path, args) -> dict:
    folder = work / f"side{side}"
    folder.mkdir()
    print(f"{side} x {side}: writing the image ...", flush=True)
    image = generated_image(side)                                                  # S x S x 3
    Image.fromarray(image).save(folder / "image.png", compress_level=1)
    cores = piece_cores(side, args.pieces)
    piece_paths = []
    for row, (top, bottom) in enumerate(cores):
        for col, (left, right) in enumerate(cores):
            (t, b), (l, r) = with_context(top, bottom, side), with_context(left, right, side)
            piece_paths.append(folder / f"piece_{row}_{col}.png")
            Image.fromarray(image[t:b, l:r]).save(piece_paths[-1], compress_level=1)
    del image
    over_cap = side * side > MAX_IMAGE_PIXELS
    print(f"{side} x {side}: segmenting the whole image{' (pixel cap raised)' if over_cap else ''} ...", flush=True)
    whole = segment([folder / "image.png"], model, folder / "whole", args, cap=side * side if over_cap else None)
    print(f"  {whole['seconds']} s, peak RSS {whole['peak_rss_mb']} MB; now the {len(piece_paths)} pieces ...",
          flush=True)
    pieces = segment(piece_paths, model, folder / "pieces", args, cap=None)
    print(f"  {pieces['seconds']} s, peak RSS {pieces['peak_rss_mb']} MB", flush=True)
    whole_mask = np.asarray(Image.open(folder / "whole" / "image_mask.png")) > 0           # S x S
    differ = 0
    for row, (top, bottom) in enumerate(cores):
        for col, (left, right) in enumerate(cores):
            (t, _), (l, _) = with_context(top, bottom, side), with_context(left, right, side)
            piece = np.asarray(Image.open(folder / "pieces" / f"piece_{row}_{col}_mask.png")) > 0
            core = piece[top - t:bottom - t, left - l:right - l]
            differ += int(np.count_nonzero(core != whole_mask[top:bottom, left:right]))
    return {"side": side, "megapixels": round(side * side / 1e6, 1), "pixel_cap_raised": over_cap,
            "whole": whole, "pieces": pieces, "mask_pixels_differing": differ,
            "mask_fraction_differing": differ / (side * side),
            "foreground_fraction": round(float(whole_mask.mean()), 4)}


def piece_cores(side: int, pieces: int) -> list[tuple[int, int]]:
    """`pieces` consecutive (start, stop) spans covering 0..side, starting on the 32-px grid."""
    bounds = [0] + [round(k * side / pieces / GRID_PX) * GRID_PX for k in range(1, pieces)] + [side]
    return list(zip(bounds[:-1], bounds[1:]))


def with_context(start: int, stop: int, side: int) -> tuple[int, int]:
    return max(0, start - EXACT_MARGIN_PX), min(side, stop + EXACT_MARGIN_PX)


def segment(images: list[Path], model: Path, out: Path, args, cap: int | None) -> dict:
    """Run `fcnlab segment` on `images` in its own process: wall seconds and peak RSS."""
    command = ["segment", *map(str, images), "--model", str(model), "--out", str(out), "--native",
               "--precision", args.precision, "--threshold", str(args.threshold)]
    prefix = ["-m", "fcnlab.cli"] if cap is None else ["-c", SEGMENT_OVER_THE_CAP, str(cap)]
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *prefix, *command], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"fcnlab {' '.join(command)} failed:\n{output[-3000:]}")
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def generated_image(side: int) -> np.ndarray:
    """A side x side x 3 uint8 image of smooth stripes and noise, made BAND_ROWS rows at a time."""
    image = np.empty((side, side, 3), np.uint8)
    rng = np.random.default_rng(0)
    x = np.arange(side, dtype=np.float32)
    for top in range(0, side, BAND_ROWS):
        y = np.arange(top, min(top + BAND_ROWS, side), dtype=np.float32)[:, None]      # b x 1
        phase = np.stack([np.sin(x / 37 + y / 53), np.cos(x / 71 - y / 29),
                          np.sin((x + y) / 97)], axis=-1)                              # b x side x 3
        noise = rng.normal(0, 20, phase.shape).astype(np.float32)
        image[top:top + len(y)] = np.clip(128 + 90 * phase + noise, 0, 255).astype(np.uint8)
    return image


def print_table(report: dict) -> None:
    """One row per side; "B/px added" is the growth of the whole run's peak RSS per pixel added
    since the previous side (TensorFlow and the model are a fixed ~1.5 GB under it)."""
    print(f"\nfcnlab segment --native, model {report['model']}, precision {report['precision']}; "
          f"{report['pieces']}x{report['pieces']} pieces with {report['margin_px']} px of context")
    print(f"{'side':>6} {'MP':>6} {'whole s':>8} {'whole RSS MB':>13} {'B/px added':>11} {'pieces s':>9} "
          f"{'pieces RSS MB':>14} {'mask px differing':>18}")
    previous = None
    for run in report["runs"]:
        added = ""
        if previous is not None and run["side"] != previous["side"]:
            grown = (run["whole"]["peak_rss_mb"] - previous["whole"]["peak_rss_mb"]) * 2 ** 20
            added = f"{grown / (run['side'] ** 2 - previous['side'] ** 2):.1f}"
        print(f"{run['side']:>6} {run['megapixels']:>6} {run['whole']['seconds']:>8} "
              f"{run['whole']['peak_rss_mb']:>13} {added:>11} {run['pieces']['seconds']:>9} "
              f"{run['pieces']['peak_rss_mb']:>14} {run['mask_pixels_differing']:>9} "
              f"({run['mask_fraction_differing']:.2e}){'  cap raised' if run['pixel_cap_raised'] else ''}")
        previous = run


if __name__ == "__main__":
    main()
