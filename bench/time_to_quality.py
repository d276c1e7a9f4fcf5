"""Time to quality, before and after, side by side in one run on one machine.

    python bench/time_to_quality.py --before 4ea572f                 # the full table
    python bench/time_to_quality.py --before 4ea572f --only repro    # one part: repro | isbi | steps

Three parts, each for this checkout ("after") and for the commit given by --before, both cloned
fresh from this repository into a scratch folder and run with this Python environment (pip
excluded):

    repro   the default `dvc repro` of a fresh clone, stage by stage (`dvc repro -s` in pipeline
            order, so the seconds of each stage are known), and its demo test mean IoU
    isbi    prepare-seg, train-fcn and evaluate-iou with every default on the ISBI membranes in
            ../shared/data/ (foreground_value 0: membranes, 22 % of pixels) and its cells polarity
            (foreground_value 1), via bench/seg_quality.py: train-fcn seconds and test IoUs
    steps   train-fcn's training step (batch 5 of 256-px windows, the default model) in float32
            and bfloat16, as GFLOP/s and as a fraction of this machine's float32 matmul peak

The CPU's vector flags head the output; every row is appended as a JSON line to --out.
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

from machine import cpu_flags                # bench/machine.py

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

FCN_STAGES = ["prepare-seg", "train-fcn", "evaluate-iou", "render-overlays"]
CAE_STAGES = ["prepare-mnist-subset", "train-cae", "plot-latent"]


def fresh_clone(commit: str, scratch: Path, name: str) -> Path:
    """A clone of this repository at `commit` (git's files only, as a user's clone)."""
    target = scratch / name
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(ROOT), str(target)], check=True)
    subprocess.run(["git", "-C", str(target), "checkout", "-q", commit], check=True)
    return target


def env_for(code: Path) -> dict:
    bin_dir = os.path.dirname(sys.executable)
    return {**os.environ, "PYTHONPATH": str(code), "PATH": bin_dir + os.pathsep + os.environ["PATH"],
            "TF_CPP_MIN_LOG_LEVEL": "3"}


def repro_row(label: str, code: Path) -> dict:
    seconds = {}
    start = time.perf_counter()
    for stage in CAE_STAGES + FCN_STAGES:
        stage_start = time.perf_counter()
        result = subprocess.run(["dvc", "repro", "-s", stage], cwd=code, env=env_for(code),
                                capture_output=True, text=True)
        seconds[stage] = round(time.perf_counter() - stage_start, 1)
        if result.returncode:
            raise SystemExit(f"{label}: dvc repro -s {stage} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        print(f"  {label}: {stage} {seconds[stage]} s", flush=True)
    total = round(time.perf_counter() - start, 1)
    metrics = json.loads((code / "reports/evaluate_iou/metrics.json").read_text())
    return {"part": "repro", "label": label, "seconds_total": total, "seconds": seconds,
            "demo_test_mean_iou": metrics["miou"], "demo_test_fg_iou": metrics["fg_iou"]}


def isbi_row(label: str, code: Path, data: str, work: Path) -> dict:
    import yaml
    from seg_quality import DATA_SETS, _deep_update, run_pipeline

    params = yaml.safe_load((code / "params.yaml").read_text())
    _deep_update(params, DATA_SETS[data])
    work.mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    row = run_pipeline(code, work)
    print(f"  {label} {data}: train-fcn {row['seconds']['train_fcn']} s, test mean IoU {row['mean_iou']}, "
          f"fg IoU {row['fg_iou']}", flush=True)
    return {"part": "isbi", "label": label, "data": data, **row}


def steps_rows(repeats: int = 4) -> list[dict]:
    """The default train-fcn step, timed warm, against this machine's float32 matmul peak."""
    import numpy as np
    import tensorflow as tf

    from fcnlab.core.quiet import quiet_tensorflow
    from fcnlab.seg.model import fcn8s_vgg16, forward_flops
    from fcnlab.seg.speedups import FusedAdam, fast_twin, with_dtype_policy

    quiet_tensorflow()
    n = 4096
    a = tf.random.normal((n, n), seed=1)
    matmul = tf.function(lambda: a @ a)
    matmul().numpy()
    start = time.perf_counter()
    for _ in range(5):
        matmul().numpy()
    peak = 5 * 2 * n ** 3 / (time.perf_counter() - start) / 1e9
    batch, side = 5, 256
    x = np.random.default_rng(0).uniform(0, 255, (batch, side, side, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[np.random.default_rng(1).integers(0, 2, (batch, side, side))]
    step_gflop = 3 * forward_flops(side, head_width=512) * batch / 1e9
    rows = []
    for precision in ("float32", "bfloat16"):
        tf.keras.utils.set_random_seed(0)
        model = fcn8s_vgg16(head_width=512, freeze_encoder=False)      # the default model: all trained
        work = model if precision == "float32" else with_dtype_policy(model, "mixed_bfloat16")
        twin = fast_twin(work)
        twin.compile(optimizer=FusedAdam(6e-4), loss="categorical_crossentropy")
        twin.train_on_batch(x, y)
        start = time.perf_counter()
        for _ in range(repeats):
            twin.train_on_batch(x, y)
        seconds = (time.perf_counter() - start) / repeats
        rows.append({"part": "steps", "precision": precision, "seconds_per_step": round(seconds, 3),
                     "step_gflop": round(step_gflop, 1), "gflops": round(step_gflop / seconds, 1),
                     "fp32_matmul_peak_gflops": round(peak, 1),
                     "fraction_of_fp32_peak": round(step_gflop / seconds / peak, 3)})
        print(f"  step {precision}: {seconds:.2f} s, {step_gflop / seconds:.0f} GFLOP/s = "
              f"{step_gflop / seconds / peak:.0%} of the fp32 matmul peak ({peak:.0f} GFLOP/s)", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the commit to compare against")
    parser.add_argument("--after", default="HEAD", help="the commit measured as 'after' (default: HEAD)")
    parser.add_argument("--only", choices=["repro", "isbi", "steps"], action="append",
                        help="run only these parts (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/time_to_quality.jsonl")
    args = parser.parse_args()
    parts = args.only or ["repro", "isbi", "steps"]
    commits = {"before": args.before, "after": subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.after], capture_output=True, text=True,
        check=True).stdout.strip()}
    header = {"date": time.strftime("%Y-%m-%d"), "cpu_flags": cpu_flags(), "commits": commits}
    print(f"CPU flags: {header['cpu_flags']}\ncommits: {commits}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="time_to_quality_") as scratch:
        scratch = Path(scratch)
        codes = {label: fresh_clone(commit, scratch, label) for label, commit in commits.items()}
        if "steps" in parts:
            rows += steps_rows()
        if "repro" in parts:
            rows += [repro_row(label, code) for label, code in codes.items()]
        if "isbi" in parts:
            rows += [isbi_row(label, code, data, scratch / f"{label}_{data}")
                     for data in ("isbi-membranes", "isbi-cells") for label, code in codes.items()]
    with open(args.out, "a") as file:
        for row in rows:
            file.write(json.dumps({**header, **row}) + "\n")
    print(json.dumps([{**header, **row} for row in rows], indent=1))


if __name__ == "__main__":
    main()
