"""Peak memory of segmenting a very large image: tiled (fcnlab.seg.tiling) against one piece.

    nice python bench/large_image_rss.py                       # 8000 x 8000, default tile and margin
    nice python bench/large_image_rss.py --side 2048 --untiled-sides 512 768   # a quick smoke run

Every measurement runs in its own subprocess, so its peak RSS (the kernel's high-water mark of
resident memory, /proc/self/status VmHWM) is that path's alone:

    tiled     a generated side x side RGB image, written band by band to a .npy file and opened
              as a read-only memmap, segmented by `predict_tiled` with the default-sized FCN-8s
              (head width 512, random weights): wall time and peak RSS.
    untiled   the one-piece path (`fcnlab.seg.predict.predict_foreground`: the whole image in
              memory, one forward pass) on smaller images. Peak RSS grows linearly with the pixels, so
              a least-squares line through these points estimates what the whole large image
              would need; running it would not fit in this machine's memory.

Prints a table and writes everything to bench/results/large_image_rss.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fcnlab.seg.tiling import DEFAULT_TILE_PX, EXACT_MARGIN_PX, padded_size, tile_windows  # noqa: E402

HEAD_WIDTH = 512           # params.yaml's fcn.head_width
BAND_ROWS = 256            # rows generated at a time when writing the test image


def main():
    args = parse_args()
    if args.worker:
        print(json.dumps(run_worker(args)))
        return
    untiled = [measure("untiled", args, side=side) for side in args.untiled_sides]
    tiled = measure("tiled", args, side=args.side)
    estimate = untiled_estimate(untiled, args.side)
    report = {"side": args.side, "tile_px": args.tile_px, "margin_px": args.margin_px,
              "head_width": HEAD_WIDTH, "tiled": tiled, "untiled_measured": untiled,
              "untiled_estimate_for_side": estimate}
    print_table(report)
    out = ROOT / "bench" / "results" / "large_image_rss.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=8000, help="the large image's side, px")
    parser.add_argument("--tile-px", type=int, default=DEFAULT_TILE_PX)
    parser.add_argument("--margin-px", type=int, default=EXACT_MARGIN_PX)
    parser.add_argument("--untiled-sides", type=int, nargs="+", default=[1024, 1536, 2048],
                        help="image sides at which the one-piece path is measured")
    parser.add_argument("--worker", choices=["tiled", "untiled"], help=argparse.SUPPRESS)
    return parser.parse_args()


def measure(worker: str, args, side: int) -> dict:
    command = [sys.executable, __file__, "--worker", worker, "--side", str(side),
               "--tile-px", str(args.tile_px), "--margin-px", str(args.margin_px)]
    print(f"running {worker} at {side} x {side} ...", flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)   # stderr: progress
    if done.returncode != 0:
        raise SystemExit(f"{worker} worker failed (exit {done.returncode}); its messages are above")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- Workers: each runs in its own process and prints one JSON line -------------------------------


def run_worker(args) -> dict:
    import keras

    from fcnlab.seg.model import fcn8s_vgg16
    from fcnlab.seg.predict import predict_foreground

    keras.utils.set_random_seed(0)
    model = fcn8s_vgg16(head_width=HEAD_WIDTH, encoder_weights="none")
    with tempfile.TemporaryDirectory() as tmp:
        image = generated_image(Path(tmp) / "image.npy", args.side)     # side x side x 3 memmap
        rss_before = peak_rss_bytes()
        start = time.perf_counter()
        if args.worker == "tiled":
            from fcnlab.seg.tiling import predict_tiled

            windows = len(tile_windows(args.side, args.side, args.tile_px, args.margin_px))
            fg_probs = predict_tiled(with_progress(lambda tiles: predict_foreground(model, tiles),
                                                   windows, start), image, args.tile_px, args.margin_px)
        else:
            from fcnlab.seg.predict import predict_foreground

            fg_probs, windows = predict_foreground(model, np.array(image)[None])[0], 1   # read whole, one pass
        seconds = time.perf_counter() - start
        return {"side": args.side, "seconds": round(seconds, 1), "windows": windows,
                "peak_rss_bytes": peak_rss_bytes(), "peak_rss_before_predicting_bytes": rss_before,
                "mean_fg_prob": float(fg_probs.mean(dtype=np.float64))}


def with_progress(predict_batch, windows: int, start: float):
    """`predict_batch`, printing to stderr how many windows are done, the time and the peak RSS."""
    done = 0

    def predict_and_report(tiles):
        nonlocal done
        probabilities = predict_batch(tiles)
        done += len(tiles)
        print(f"  {done}/{windows} windows, {time.perf_counter() - start:.0f} s, "
              f"peak RSS {peak_rss_bytes() / 2**30:.2f} GiB", file=sys.stderr, flush=True)
        return probabilities

    return predict_and_report


def generated_image(path: Path, side: int) -> np.ndarray:
    """A side x side x 3 uint8 image of smooth stripes and noise, written BAND_ROWS rows at a time
    (never whole in memory) and returned as a read-only memmap."""
    image = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(side, side, 3))
    rng = np.random.default_rng(0)
    x = np.arange(side, dtype=np.float32)
    for top in range(0, side, BAND_ROWS):
        y = np.arange(top, min(top + BAND_ROWS, side), dtype=np.float32)[:, None]      # b x 1
        phase = np.stack([np.sin(x / 37 + y / 53), np.cos(x / 71 - y / 29),
                          np.sin((x + y) / 97)], axis=-1)                              # b x side x 3
        noise = rng.normal(0, 20, phase.shape)
        image[top:top + len(y)] = np.clip(128 + 90 * phase + noise, 0, 255).astype(np.uint8)
    image.flush()
    del image
    return np.load(path, mmap_mode="r")


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


# --- The estimate and the table --------------------------------------------------------------------


def untiled_estimate(untiled: list[dict], side: int) -> dict:
    """Least-squares line peak RSS = fixed + per_pixel * padded pixels through the measured runs,
    evaluated at side x side."""
    pixels = np.array([np.prod(padded_size(m["side"], m["side"])) for m in untiled], dtype=float)
    peaks = np.array([m["peak_rss_bytes"] for m in untiled], dtype=float)
    per_pixel, fixed = np.polyfit(pixels, peaks, 1) if len(untiled) > 1 else (peaks[0] / pixels[0], 0.0)
    target = float(np.prod(padded_size(side, side)))
    return {"bytes_per_pixel": round(float(per_pixel), 1), "fixed_bytes": int(fixed),
            "peak_rss_bytes": int(fixed + per_pixel * target)}


def print_table(report: dict) -> None:
    gib = 2 ** 30
    print(f"\nFCN-8s, head width {report['head_width']}, random weights; "
          f"tile {report['tile_px']} px, margin {report['margin_px']} px")
    print(f"{'path':<10} {'side':>6} {'windows':>8} {'seconds':>8} {'peak RSS GiB':>13}")
    for m in report["untiled_measured"]:
        print(f"{'untiled':<10} {m['side']:>6} {1:>8} {m['seconds']:>8} {m['peak_rss_bytes'] / gib:>13.2f}")
    t = report["tiled"]
    print(f"{'tiled':<10} {t['side']:>6} {t['windows']:>8} {t['seconds']:>8} {t['peak_rss_bytes'] / gib:>13.2f}")
    e = report["untiled_estimate_for_side"]
    print(f"{'untiled':<10} {report['side']:>6} {'(estimate)':>17} {e['peak_rss_bytes'] / gib:>13.2f}"
          f"   = {e['fixed_bytes'] / gib:.2f} GiB + {e['bytes_per_pixel']:.0f} B/px")


if __name__ == "__main__":
    main()
