"""Scale benchmark: every FCN stage on generated folder data sets of growing size, each stage's
wall time, time per image (per step for train-fcn) and peak RSS, in one sitting.

    nice python bench/scale.py                           # 1,000, 10,000 and 20,000 images of 128 px
    nice python bench/scale.py --sizes 200,1000          # a quick run
    nice python bench/scale.py --sizes 1000,10000 --image-px 256

For each size N it writes N random scenes of `--image-px` pixels (PNG images and masks: a noisy
background with a few bright blobs, one of which is the foreground) into a folder source, then
runs the four stage scripts (prepare-seg, train-fcn, evaluate-iou, render-overlays), each in its
own subprocess, on the project's params.yaml changed only where a benchmark must:
`seg.source: folder` at the images' own size (`seg.resize: square`, `seg.image_size`), and
`fcn.epochs: 1`, `fcn.steps_per_epoch: --steps`, `fcn.precision: auto` (the model, batch size,
loss and augmentation are the defaults).

A stage's peak RSS is its own process's maximum resident set size (`os.wait4`): it counts the
pages of the prepared shards it has memory-mapped and touched, as the kernel does. Per added
image is the growth of peak RSS divided by the images added, against the first size and against
the previous one: the first can include fixed buffers that fill up between small sizes (a shard
holds up to `seg.shard_megapixels`, train-fcn reads two shards at a time), the second shows
what grows with the data. train-fcn's epoch ends with a prediction of every validation image
(the per-epoch validation IoU), which grows with N; its time per step subtracts that pass,
estimated as n_val times the time a test image adds to evaluate-iou between the smallest and
largest size (val and test are the same size here; start-up cancels), so it is about the
training step alone, plus train-fcn's start-up spread over the steps. Appends one JSON line per stage to bench/results/scale.jsonl and prints the table.
"""

from __future__ import annotations

import argparse
import datetime
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

from machine import commit, cpu_flags                # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "scale.jsonl"
STAGES = ("prepare-seg", "train-fcn", "evaluate-iou", "render-overlays")


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


def bench_params(path: Path, data: Path, image_px: int, steps: int) -> dict:
    """The project's params.yaml with the folder source at the images' size and a fixed number of steps."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update(source="folder", path=str(data), resize="square", image_size=image_px)
    params["fcn"].update(epochs=1, steps_per_epoch=steps, precision="auto")
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def run_measured(args: list[str]) -> dict:
    """Run `python <args>` from the repository root: its wall seconds, peak RSS in MB and output."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(args)} failed ({code}):\n{output[-3000:]}")
    return {"seconds": round(seconds, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "output": output}


def stage_commands(work: Path) -> dict[str, list[str]]:
    params = ["--params", str(work / "params.yaml")]
    data, model, predictions = str(work / "prepared"), str(work / "model" / "fcn.keras"), str(work / "predictions")
    reports = work / "reports"
    return {
        "prepare-seg": ["stages/prepare_seg.py", *params, "--out", data, "--summary", str(reports / "prep.json")],
        "train-fcn": ["stages/train_fcn.py", *params, "--data", data, "--model", model,
                      "--geometry", str(work / "model" / "geometry.json"), "--live", str(reports / "live"),
                      "--epochs", str(reports / "epochs.csv"), "--metrics", str(reports / "train.json"),
                      "--details", str(reports / "train_details.json")],
        "evaluate-iou": ["stages/evaluate_iou.py", *params, "--data", data, "--model", model,
                         "--predictions", predictions, "--per_image", str(reports / "per_image.csv"),
                         "--threshold_curve", str(reports / "curve.csv"), "--metrics", str(reports / "eval.json"),
                         "--details", str(reports / "eval_details.json")],
        "render-overlays": ["stages/render_overlays.py", *params, "--data", data, "--predictions", predictions,
                            "--figures", str(reports / "overlays")],
    }


def bench_size(n_images: int, args) -> list[dict]:
    work = Path(args.workdir) / f"n{n_images}_px{args.image_px}"
    shutil.rmtree(work, ignore_errors=True)
    print(f"n={n_images}: writing {n_images} scenes of {args.image_px} px ...", flush=True)
    write_scenes(work / "source", n_images, args.image_px)
    params = bench_params(work / "params.yaml", work / "source", args.image_px, args.steps)
    rows = []
    for stage, command in stage_commands(work).items():
        measured = run_measured(command)
        rows.append({"images": n_images, "image_px": args.image_px, "stage": stage,
                     "seconds": measured["seconds"], "peak_rss_mb": measured["peak_rss_mb"]})
        if stage == "prepare-seg":
            counts = json.loads((work / "reports" / "prep.json").read_text())
            split = {name: counts[name]["count"] for name in ("train", "val", "test")}
        print(f"  {stage}: {measured['seconds']} s, peak RSS {measured['peak_rss_mb']} MB", flush=True)
    steps = min(args.steps, -(-split["train"] // params["fcn"]["batch_size"]))
    for row in rows:          # what each stage's time is per: images read, or training steps
        row.update(split, steps=steps, batch_size=params["fcn"]["batch_size"], cpus=os.cpu_count(),
                   machine=platform.machine(), date=datetime.date.today().isoformat())
    if not args.keep:
        shutil.rmtree(work)
    return rows


def with_rates(rows: list[dict]) -> list[dict]:
    """Each row with its time per unit (image or step) and its RSS growth per added image."""
    by = {(row["images"], row["stage"]): row for row in rows}
    sizes = list(dict.fromkeys(row["images"] for row in rows))
    evaluations = [by[(n, "evaluate-iou")] for n in (sizes[0], sizes[-1])]
    per_test_image = None       # one size: no marginal time, so no per-step time for train-fcn
    if len(sizes) > 1:          # the marginal time a test image adds, start-up cancelled
        per_test_image = ((evaluations[1]["seconds"] - evaluations[0]["seconds"])
                          / (evaluations[1]["test"] - evaluations[0]["test"]))
    for row in rows:
        n, stage = row["images"], row["stage"]
        if stage == "prepare-seg":
            row["unit"], row["per_unit_s"] = "image", row["seconds"] / n
        elif stage == "train-fcn":
            row["unit"] = "step"
            row["per_unit_s"] = (None if per_test_image is None else
                                 max(0.0, row["seconds"] - row["val"] * per_test_image) / row["steps"])
        else:
            row["unit"], row["per_unit_s"] = "image", row["seconds"] / row["test"]
        first, previous = by[(sizes[0], stage)], by[(sizes[max(0, sizes.index(n) - 1)], stage)]
        for name, base in (("first", first), ("previous", previous)):
            added = n - base["images"]
            row[f"kb_per_added_image_vs_{name}"] = (
                None if added == 0 else round((row["peak_rss_mb"] - base["peak_rss_mb"]) * 1024 / added, 2))
        row["time_ratio_vs_first"] = (round(row["per_unit_s"] / first["per_unit_s"], 2)
                                      if row["per_unit_s"] is not None and first["per_unit_s"] else None)
    for row in rows:
        row["per_unit_s"] = None if row["per_unit_s"] is None else round(row["per_unit_s"], 4)
    return rows


def _cell(value, spec: str) -> str:
    """A table cell: `value` formatted by `spec`, or "-" where it cannot be measured (None)."""
    return "-" if value is None else format(value, spec)


def print_table(rows: list[dict]) -> None:
    print(f"\n{'stage':<16} {'images':>7} {'wall s':>8} {'per unit s':>15} {'x first':>8} "
          f"{'peak RSS MB':>12} {'KB/added img':>13} {'(vs prev)':>10}")
    for stage in STAGES:
        for row in (row for row in rows if row["stage"] == stage):
            per_unit = f"{_cell(row['per_unit_s'], '.4f')}/{row['unit']}"
            print(f"{stage:<16} {row['images']:>7} {row['seconds']:>8.1f} {per_unit:>15} "
                  f"{_cell(row['time_ratio_vs_first'], ''):>8} {row['peak_rss_mb']:>12.1f} "
                  f"{_cell(row['kb_per_added_image_vs_first'], '.2f'):>13} "
                  f"{_cell(row['kb_per_added_image_vs_previous'], '.2f'):>10}")
    first = rows[0]
    print(f"\nper unit: prepare-seg per image; train-fcn per step of {first['batch_size']} images "
          f"({first['steps']} steps at the first size; the validation pass subtracted, see the docstring); "
          "evaluate-iou and render-overlays per test image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,20000",
                        help="comma-separated numbers of images (default: 1000,10000,20000)")
    parser.add_argument("--image-px", type=int, default=128, help="side of the square images (a multiple of 32)")
    parser.add_argument("--steps", type=int, default=50, help="training steps (fcn.steps_per_epoch; one epoch)")
    parser.add_argument("--workdir", default="/tmp/fcnlab_scale")
    parser.add_argument("--keep", action="store_true", help="keep each size's generated data and outputs")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    print(f"commit {commit()}, {datetime.date.today().isoformat()}, {os.cpu_count()} CPUs, "
          f"{platform.processor() or platform.machine()}; CPU flags: {cpu_flags()}", flush=True)
    rows = with_rates([row for n_images in sizes for row in bench_size(n_images, args)])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as results:
        for row in rows:
            results.write(json.dumps({**row, "commit": commit(), "cpu_flags": cpu_flags()}) + "\n")
    print_table(rows)


if __name__ == "__main__":
    main()
