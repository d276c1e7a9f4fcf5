"""Scale benchmark: prepare-seg, one epoch of train-fcn and evaluate-iou on generated folder data
sets of growing size, each stage's wall time and peak RSS.

    python bench/scale.py                          # 1,000, 10,000 and 20,000 images (hours on 2 cores)
    python bench/scale.py --sizes 40 80            # a smoke test

For each size N it writes N random scenes of `--image-px` pixels (PNG images and masks: a noisy
background with a few bright blobs, one of which is the foreground) into a folder source, then
runs the real stage scripts, each in its own subprocess, on a params.yaml that is the project's
with `seg.source: folder`, one epoch and a small head (`--head-width`). A stage's peak RSS is
its own process's maximum resident set size (`os.wait4`), which counts the memory-mapped pages
of the prepared shards it touched. Appends one JSON line per stage to
bench/results/scale.jsonl and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.jsonl"


def write_scenes(folder: Path, n_images: int, size: int, seed: int = 0) -> None:
    """`folder/images/00000.png ...` and `folder/masks/00000.png ...`: n random scenes of size x size."""
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    for i in range(n_images):
        image = rng.normal(rng.uniform(40, 160, 3), 20, (size, size, 3))                  # S x S x 3
        mask = np.zeros((size, size), bool)
        for blob in range(rng.integers(2, 5)):
            r, c = rng.uniform(0.15, 0.85, 2) * size
            radius = rng.uniform(0.05, 0.2) * size
            inside = (rows - r) ** 2 + (cols - c) ** 2 < radius ** 2
            image[inside] += rng.uniform(30, 90)
            if blob == 0:
                mask |= inside
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / f"{i:05d}.png")
        Image.fromarray(mask.astype(np.uint8) * 255).save(folder / "masks" / f"{i:05d}.png")


def bench_params(path: Path, data: Path, size: int, head_width: int, batch_size: int) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update(source="folder", path=str(data), resize="square", image_size=size)
    params["fcn"].update(head_width=head_width, epochs=1, batch_size=batch_size, patch_size=size)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def run_measured(args: list[str]) -> dict:
    """Run `python <args>` from the repository root; its wall seconds and peak RSS in MB."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({process.returncode}):\n{output[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}   # ru_maxrss: KiB


def stage_commands(work: Path) -> dict[str, list[str]]:
    params = ["--params", str(work / "params.yaml")]
    data, model = str(work / "prepared"), str(work / "model" / "fcn.keras")
    reports = work / "reports"
    return {
        "prepare-seg": ["stages/prepare_seg.py", *params, "--out", data, "--summary", str(reports / "prep.json")],
        "train-fcn": ["stages/train_fcn.py", *params, "--data", data, "--model", model,
                      "--geometry", str(work / "model" / "geometry.json"), "--live", str(reports / "live"),
                      "--epochs", str(reports / "epochs.csv"), "--metrics", str(reports / "train.json"),
                      "--details", str(reports / "train_details.json")],
        "evaluate-iou": ["stages/evaluate_iou.py", *params, "--data", data, "--model", model,
                         "--predictions", str(work / "predictions"), "--per_image", str(reports / "per_image.csv"),
                         "--threshold_curve", str(reports / "curve.csv"), "--metrics", str(reports / "eval.json"),
                         "--details", str(reports / "eval_details.json")],
    }


def bench_size(n_images: int, args) -> list[dict]:
    work = Path(args.workdir) / f"n{n_images}"
    shutil.rmtree(work, ignore_errors=True)
    write_scenes(work / "source", n_images, args.image_px)
    bench_params(work / "params.yaml", work / "source", args.image_px, args.head_width, args.batch_size)
    rows = []
    for stage, command in stage_commands(work).items():
        row = {"images": n_images, "image_px": args.image_px, "stage": stage, **run_measured(command),
               "head_width": args.head_width, "cpus": os.cpu_count(), "machine": platform.machine()}
        print(json.dumps(row), flush=True)
        rows.append(row)
    if not args.keep:
        shutil.rmtree(work)
    return rows


def print_table(rows: list[dict]) -> None:
    stages = list(dict.fromkeys(row["stage"] for row in rows))
    print(f"{'images':>8} " + " ".join(f"{stage + ' s':>16} {'RSS MB':>8}" for stage in stages))
    for n_images in dict.fromkeys(row["images"] for row in rows):
        cells = {row["stage"]: row for row in rows if row["images"] == n_images}
        print(f"{n_images:>8} " + " ".join(f"{cells[s]['seconds']:>16} {cells[s]['peak_rss_mb']:>8}"
                                           for s in stages))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 20000])
    parser.add_argument("--image-px", type=int, default=256)
    parser.add_argument("--head-width", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workdir", default="/tmp/fcnlab_scale")
    parser.add_argument("--keep", action="store_true", help="keep each size's generated data and outputs")
    args = parser.parse_args()
    rows = [row for n_images in args.sizes for row in bench_size(n_images, args)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        for row in rows:
            results.write(json.dumps(row) + "\n")
    print_table(rows)


if __name__ == "__main__":
    main()
