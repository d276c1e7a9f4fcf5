"""Segmentation quality on real and demo data: prepare-seg, train-fcn and evaluate-iou run as the
pipeline runs them (the stage scripts, in a scratch folder), with params overrides; then
`fcnlab segment` on the test images' own files at their own size, scored against their own masks.

    python bench/seg_quality.py --data demo
    python bench/seg_quality.py --data isbi-membranes --set fcn.epochs=20 --set fcn.loss=crossentropy
    python bench/seg_quality.py --data isbi-cells --code /path/to/an/older/checkout   # "before"

Data sets: `demo` (the default scenes), the ISBI 2012 membranes in ../shared/data/ two ways:
`isbi-cells` (seg.foreground_value 1: cell interiors are the foreground, 78 % of the pixels) and
`isbi-membranes` (foreground_value 0: the thin membranes, 22 %), and bench/own_data.py's generated
folders: `thin` (curved lines 1-4 px wide, odd mixed sizes) and `blobs-HxW` (every image H x W). Each run appends one JSON line to
--out and prints it: mean IoU, foreground IoU, the best baseline, beats_baselines, the kept epoch,
stage times, and the segment-vs-evaluate agreement.
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
import yaml

ROOT = Path(__file__).resolve().parents[1]
ISBI = ROOT.parent / "shared" / "data" / "isbi2012_membrane"
GENERATED = Path(tempfile.gettempdir()) / "fcnlab-bench-data"      # bench/own_data.py folders, made once
DATA_SETS = {
    "demo": {"seg": {"source": "demo"}},
    "isbi-cells": {"seg": {"source": "folder", "path": str(ISBI), "foreground_value": 1}},
    "isbi-membranes": {"seg": {"source": "folder", "path": str(ISBI), "foreground_value": 0}},
    **{kind: {"seg": {"source": "folder", "path": str(GENERATED / kind), "foreground_value": 1}}
       for kind in ("thin", "blobs-584x565", "blobs-333x500", "blobs-500x333")},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=sorted(DATA_SETS), required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a params override, as dvc exp run -S (value parsed as YAML)")
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose stages run (default: this one)")
    parser.add_argument("--label", default="", help="a name for this row")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "seg_quality.jsonl")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    if args.data in ("thin",) or args.data.startswith("blobs-"):
        from own_data import write_folder

        if not (GENERATED / args.data).is_dir():
            write_folder(GENERATED / args.data, args.data)
    params = yaml.safe_load((args.code / "params.yaml").read_text())
    _deep_update(params, DATA_SETS[args.data])
    for item in args.set:
        key, value = item.split("=", 1)
        _set(params, key, yaml.safe_load(value))
    work = args.keep or Path(tempfile.mkdtemp(prefix="seg_quality_"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    row = {"data": args.data, "label": args.label, "overrides": args.set, "code": str(args.code)}
    row.update(run_pipeline(args.code, work))
    if args.data != "demo":
        row["segment"] = segment_agreement(args.code, work, params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as file:
        file.write(json.dumps(row) + "\n")
    print(json.dumps(row, indent=1))


def run_pipeline(code: Path, work: Path) -> dict:
    old_layout = not (code / "fcnlab" / "seg").is_dir()     # before the geometry work: fewer outputs
    commands = {
        "prepare_seg": ["--out", "data", "--summary", "prepare.json"],
        "train_fcn": (["--data", "data", "--model", "model.keras", "--live", "live", "--metrics", "train.json"]
                      + ([] if old_layout else ["--geometry", "model.geometry.json", "--epochs", "epochs.csv",
                                                "--details", "train_details.json"])),
        "evaluate_iou": ["--data", "data", "--model", "model.keras", "--predictions", "predictions",
                         "--per_image", "per_image.csv", "--threshold_curve", "curve.csv",
                         "--metrics", "evaluate.json"] + ([] if old_layout else ["--details", "evaluate_details.json"]),
    }
    seconds = {}
    for stage, stage_args in commands.items():
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(code / "stages" / f"{stage}.py"), "--params", "params.yaml",
                                 *stage_args], cwd=work, env=_env(code), capture_output=True, text=True)
        seconds[stage] = round(time.perf_counter() - start, 1)
        if result.returncode:
            raise SystemExit(f"{stage} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        if "warning:" in result.stderr:
            print("".join(line + "\n" for line in result.stderr.splitlines() if "warning:" in line), end="")
    evaluated = json.loads((work / ("evaluate.json" if old_layout else "evaluate_details.json")).read_text())
    trained = json.loads((work / ("train.json" if old_layout else "train_details.json")).read_text())
    baselines = {name: b["mean_iou"] for name, b in evaluated["baselines"].items()}
    return {"mean_iou": evaluated["model"]["mean_iou"], "fg_iou": evaluated["model"]["iou"]["foreground"],
            "best_baseline": max(baselines.items(), key=lambda item: item[1] or 0),
            "all_background_fg_iou": evaluated["baselines"]["all_background"]["iou"]["foreground"],
            "beats_baselines": evaluated.get("beats_baselines"), "seconds": seconds,
            "kept_epoch": trained.get("kept_epoch"), "epochs_run": trained.get("epochs_run"),
            "work": str(work)}


def segment_agreement(code: Path, work: Path, params: dict) -> dict:
    """`fcnlab segment` on the test split's own files, scored at their own size against their own
    masks, next to evaluate-iou's score of the same images at the training scale."""
    sys.path.insert(0, str(code))
    try:
        from fcnlab.seg.sources import image_files_by_stem, split_indices
    except ImportError:                                            # a checkout from before the layout
        from fcnlab.seg_data import image_files_by_stem, split_indices

    seg = params["seg"]
    folder = Path(seg["path"])
    images = image_files_by_stem(folder / "images")
    masks = image_files_by_stem(folder / "masks")
    stems = list(images)
    _, _, test = split_indices(len(stems), seg["seed"], folder, seg["val_fraction"], seg["test_fraction"])
    test_stems = [stems[i] for i in test]
    out = work / "segmented"
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "fcnlab.cli", "segment", *[str(images[s]) for s in test_stems],
                             "--model", str(work / "model.keras"), "--out", str(out)],
                            cwd=work, env=_env(code), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"segment failed:\n{result.stderr[-3000:]}")
    counts = np.zeros(4, dtype=np.int64)                              # tp, fp, fn, tn
    from PIL import Image
    for stem in test_stems:
        truth = (np.asarray(Image.open(masks[stem]).convert("L")) == 255) == bool(seg["foreground_value"])
        predicted = np.asarray(Image.open(out / f"{stem}_mask.png")) == 255
        counts += [np.sum(truth & predicted), np.sum(~truth & predicted), np.sum(truth & ~predicted),
                   np.sum(~truth & ~predicted)]
    tp, fp, fn, tn = (int(c) for c in counts)
    fg, bg = tp / (tp + fp + fn), tn / (tn + fn + fp)
    return {"fg_iou_own_size": round(fg, 6), "mean_iou_own_size": round((fg + bg) / 2, 6),
            "images": len(test_stems), "seconds": round(time.perf_counter() - start, 1)}


def _env(code: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}


def _set(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        params = params.setdefault(key, {})
    params[last] = value


def _deep_update(target: dict, overrides: dict) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


if __name__ == "__main__":
    main()
