"""Side-by-side benchmark: the seed's training/inference code against fcnlab's, on one machine, in one run.

    python bench/fcn_benchmark.py                   # full run (about 10 minutes on 2 CPU cores)
    python bench/fcn_benchmark.py --quick           # smaller, for a smoke test

For two FCN configurations -- the seed's (224 px, 4096-wide head, frozen encoder, batch 5) and
the project's default from params.yaml -- it times, on the same generated images:

    seed train      the seed's `model.fit` on NumPy arrays (whole network every epoch)
    fcnlab train    `fcnlab.seg.training.train_fcn`: the tf.data stream, padding-free conv6 and
                    fused Adam (fcnlab.seg.speedups), the validation IoU every epoch
    seed predict    the seed's `model.predict(test_imgs[[i]])`, one image per call
    fcnlab predict  `fcnlab.seg.predict.predict_foreground` (batched, padding-free conv6)
    ... bf16        the two fcnlab paths again with precision bfloat16 (opt-in mixed precision;
                    its "% peak" is still a fraction of the FP32 peak)

plus the CAE's training (seed vs fcnlab) and the machine's practical FP32 peak (the faster of
a large matmul and a large 3x3 convolution). Every measurement runs in its own subprocess (so
peak RSS is that path's alone), discards a warm-up, and reports the median of several repeats.
Convolution FLOPs are counted analytically (`gflop_counts`): "model" GFLOP/s uses the model's
count, the same for both paths; "done" GFLOP/s and the fraction of peak count the FLOPs each
path actually performs. Writes the table to stdout and everything to
bench/results/fcn_benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


# --- Workers: each runs in its own process and prints one JSON line ------------------------------


def worker_peak(cfg):
    """The machine's practical FP32 peak: the fastest of a large matmul and a large 3x3 convolution."""
    import tensorflow as tf

    n = cfg.get("matmul_size", 4096)
    a, b = tf.random.normal((n, n), seed=1), tf.random.normal((n, n), seed=2)
    side, channels = cfg.get("conv_side", 28), cfg.get("conv_channels", 512)
    x = tf.random.normal((8, side, side, channels), seed=3)
    kernel = tf.random.normal((3, 3, channels, channels), seed=4)
    rates = {"matmul": _gflops(tf.function(lambda: tf.linalg.matmul(a, b)), 2 * n**3, cfg["repeats"]),
             "conv3x3": _gflops(tf.function(lambda: tf.nn.conv2d(x, kernel, 1, "SAME")),
                                2 * 8 * side * side * 9 * channels * channels, cfg["repeats"])}
    return {"gflops": max(rates.values()), "by_kernel": rates}


def _gflops(fn, flops: int, repeats: int) -> float:
    return flops / _warm_seconds(lambda: fn().numpy(), repeats * 3) / 1e9


N_VAL = 4   # validation images: fcnlab's train-fcn validates on them every epoch (the seed does not)


def _seg_data(cfg):
    from fcnlab.seg.sources import demo_segmentation

    return demo_segmentation(cfg["n_train"], N_VAL, cfg["n_test"], cfg["image_size"], seed=0)


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                inner.start = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                self.seconds.append(time.perf_counter() - inner.start)

        self.seconds: list[float] = []
        self.callback = _Timer()


def worker_seed_train(cfg):
    import keras
    import numpy as np
    from bench.seed_models import seed_fcn

    keras.utils.set_random_seed(0)
    data = _seg_data(cfg)
    model = seed_fcn(cfg["image_size"], cfg["head_width"], freeze_encoder=cfg["freeze_encoder"])
    timer = EpochTimer()
    x = data.train_images.astype(np.float32)
    y = np.eye(2, dtype=np.float32)[data.train_masks]
    model.fit(x, y, batch_size=cfg["batch_size"], epochs=1 + cfg["repeats"], verbose=0, callbacks=[timer.callback])
    epoch = statistics.median(timer.seconds[1:])
    return {"epoch_seconds": epoch, "images_per_second": cfg["n_train"] / epoch}


def worker_fcnlab_train(cfg):
    import keras
    from fcnlab.seg.model import fcn8s_vgg16
    from fcnlab.seg.training import train_fcn

    keras.utils.set_random_seed(0)
    data = _seg_data(cfg)
    model = fcn8s_vgg16(head_width=cfg["head_width"], freeze_encoder=cfg["freeze_encoder"])
    timer = EpochTimer()
    train_fcn(model, data.train_images, data.train_masks, data.val_images, data.val_masks,
              epochs=1 + cfg["repeats"], batch_size=cfg["batch_size"], learning_rate=1e-4,
              callbacks=[timer.callback], precision=cfg["precision"])
    epoch = statistics.median(timer.seconds[1:])
    return {"epoch_seconds": epoch, "images_per_second": cfg["n_train"] / epoch}


def _warm_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker_seed_predict(cfg):
    import keras
    import numpy as np
    from bench.seed_models import seed_fcn, seed_predict_one_by_one

    keras.utils.set_random_seed(0)
    images = _seg_data(cfg).test_images.astype(np.float32)
    model = seed_fcn(cfg["image_size"], cfg["head_width"])
    return _prediction_rate(lambda batch: seed_predict_one_by_one(model, batch), images, cfg["repeats"])


def worker_fcnlab_predict(cfg):
    import keras
    from fcnlab.seg.model import fcn8s_vgg16
    from fcnlab.seg.predict import predict_foreground

    keras.utils.set_random_seed(0)
    images = _seg_data(cfg).test_images
    model = fcn8s_vgg16(head_width=cfg["head_width"])
    return _prediction_rate(lambda batch: predict_foreground(model, batch, precision=cfg["precision"]),
                            images, cfg["repeats"])


def _prediction_rate(predict, images, repeats: int) -> dict:
    """Images per second of `predict(images)`: a warm-up run, then the median of repeats."""
    return {"images_per_second": len(images) / _warm_seconds(lambda: predict(images), repeats)}


def _mnist(cfg):
    from fcnlab.cae.data import prepare_mnist_subset
    from fcnlab.core.mnist import load_mnist

    return prepare_mnist_subset(*load_mnist("embedded", 0.2, 0), digits=[1, 5, 6], origin="embedded")


def worker_seed_cae(cfg):
    import keras
    from bench.seed_models import seed_cae

    keras.utils.set_random_seed(0)
    data = _mnist(cfg)
    model = seed_cae()
    start = time.perf_counter()
    model.fit(data.train_x, data.train_x, epochs=cfg["cae_epochs"], verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "test_mse": float(model.evaluate(data.test_x, data.test_x, verbose=0))}


def worker_fcnlab_cae(cfg):
    from fcnlab.cae.training import reconstruct, reconstruction_metrics, train_cae
    from fcnlab.core.reproducibility import seed_everything

    seed_everything(0)
    data = _mnist(cfg)
    start = time.perf_counter()
    encoder, decoder = train_cae(data.train_x, data.test_x, cfg["cae_epochs"], 32, 1e-3)
    seconds = time.perf_counter() - start
    return {"seconds": seconds,
            "test_mse": reconstruction_metrics(data.test_x, reconstruct(encoder, decoder, data.test_x))["mse"]}


WORKERS = {name[len("worker_"):]: fn for name, fn in globals().items() if name.startswith("worker_")}

# Rows of the table: path -> (worker, config overrides). The bf16 rows are fcnlab's opt-in
# mixed precision (fcn.precision / evaluate.precision: bfloat16).
PATHS = {
    "seed_train": ("seed_train", {}),
    "fcnlab_train": ("fcnlab_train", {"precision": "float32"}),
    "fcnlab_train_bf16": ("fcnlab_train", {"precision": "bfloat16"}),
    "seed_predict": ("seed_predict", {}),
    "fcnlab_predict": ("fcnlab_predict", {"precision": "float32"}),
    "fcnlab_predict_bf16": ("fcnlab_predict", {"precision": "bfloat16"}),
}


def run_worker(name: str, cfg: dict) -> dict:
    """Run one worker in a fresh Python process; return its JSON result plus its peak RSS."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, __file__, "--worker", name, "--config", json.dumps(cfg)],
                            capture_output=True, text=True, env=env, cwd=ROOT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"worker {name} failed:\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


# --- The report ------------------------------------------------------------------------------------


def gflop_counts(cfg) -> dict:
    """GFLOPs per image: forward passes of the encoder and head, and what each path performs.

    "model" counts follow the usual convention for a training step (3x the forward pass of the
    trained layers, 1x of a frozen encoder) and are the same for the seed and fcnlab.
    "performed" counts what each path computes: a frozen encoder needs no gradient into conv6's
    input, and fcnlab's padding-free conv6 skips the products with its zero padding.
    """
    from fcnlab.seg.speedups import MIN_SKIPPED_FRACTION, skipped_fraction
    from fcnlab.seg.model import encoder_forward_flops, head_forward_flops

    size, width, frozen = cfg["image_size"], cfg["head_width"], cfg["freeze_encoder"]
    encoder = encoder_forward_flops(size) / 1e9
    head = head_forward_flops(size, width) / 1e9
    conv6 = 2 * (size // 32) ** 2 * 7 * 7 * 512 * width / 1e9
    skipped = skipped_fraction((7, 7), size // 32, size // 32)
    conv6_ours = conv6 * (1 - skipped) if skipped >= MIN_SKIPPED_FRACTION else conv6
    head_ours = head - conv6 + conv6_ours
    return {
        "encoder": encoder, "head": head, "conv6": conv6, "conv6_padding_free": conv6_ours,
        "model_train_step": (1 if frozen else 3) * encoder + 3 * head,
        "model_forward": encoder + head,
        "performed": {
            "seed_train_step": encoder + 3 * head - conv6 if frozen else 3 * (encoder + head),
            "fcnlab_train_step": encoder + 3 * head_ours - conv6_ours if frozen else 3 * (encoder + head_ours),
            "seed_predict": encoder + head,
            "fcnlab_predict": encoder + head_ours,
        },
    }


def performed_gflops_per_second(cfg, flops, measured) -> dict:
    """Achieved GFLOP/s of each path, counting the FLOPs it actually performs."""
    done, m = flops["performed"], measured
    rates = {"seed_train": done["seed_train_step"] * m["seed_train"]["images_per_second"]}
    for path in PATHS:
        if path.startswith("fcnlab_train"):
            rates[path] = done["fcnlab_train_step"] * m[path]["images_per_second"]
        elif "predict" in path:
            rates[path] = done[path.replace("_bf16", "")] * m[path]["images_per_second"]
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    parser.add_argument("--out", default=str(ROOT / "bench/results/fcn_benchmark.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = WORKERS[args.worker](json.loads(args.config))
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    repeats = 1 if args.quick else 2
    configs = {
        "seed (224 px, w 4096, frozen, batch 5)": {
            "image_size": 64 if args.quick else 224, "head_width": 64 if args.quick else 4096,
            "freeze_encoder": True, "batch_size": 5, "epochs": 5},
        f"default ({params['seg']['image_size']} px, w {params['fcn']['head_width']}, "
        f"{'frozen' if params['fcn']['freeze_encoder'] else 'trainable'}, batch {params['fcn']['batch_size']})": {
            "image_size": 64 if args.quick else params["seg"]["image_size"],
            "head_width": 64 if args.quick else params["fcn"]["head_width"],
            "freeze_encoder": params["fcn"]["freeze_encoder"], "batch_size": params["fcn"]["batch_size"],
            "epochs": params["fcn"]["epochs"]},
    }
    common = {"n_train": 10 if args.quick else 20, "n_test": 4 if args.quick else 8, "repeats": repeats,
              "cae_epochs": 1 if args.quick else params["cae"]["epochs"]}

    peak_result = run_worker("peak", {**common, "matmul_size": 512 if args.quick else 4096,
                                      "conv_channels": 64 if args.quick else 512})
    peak, peak_by_kernel = peak_result["gflops"], peak_result["by_kernel"]
    rows, results = [], {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                     "python": platform.python_version()},
                         "peak_fp32_gflops": peak, "peak_by_kernel": peak_by_kernel, "configs": {}}
    for name, cfg in configs.items():
        cfg = {**common, **cfg}
        flops = gflop_counts(cfg)
        measured = {path: run_worker(worker, {**cfg, **extra}) for path, (worker, extra) in PATHS.items()}
        rate = {path: measured[path]["images_per_second"] for path in measured}
        summary = {
            "config": cfg, "gflop_per_image": flops, "measured": measured,
            "speedup_vs_seed": {path: rate[path] / rate["seed_train" if "train" in path else "seed_predict"]
                                for path in rate},
            "model_gflops_per_second": {path: (flops["model_train_step"] if "train" in path
                                               else flops["model_forward"]) * rate[path] for path in rate},
            "performed_gflops_per_second": performed_gflops_per_second(cfg, flops, measured),
        }
        summary["performed_fraction_of_peak"] = {path: value / peak for path, value in
                                                 summary["performed_gflops_per_second"].items()}
        results["configs"][name] = summary
        rows.append((name, summary))

    cae = {"seed": run_worker("seed_cae", common), "fcnlab": run_worker("fcnlab_cae", common)}
    results["cae"] = cae

    print(f"\nMachine: {results['machine']}; practical FP32 peak: {peak:.1f} GFLOP/s "
          f"(best of {', '.join(f'{k} {v:.0f}' for k, v in peak_by_kernel.items())})")
    header = (f"{'configuration':46} {'path':20} {'img/s':>7} {'vs seed':>8} {'model GF/s':>10} "
              f"{'done GF/s':>9} {'% peak':>7} {'RSS MB':>7}")
    print(header)
    print("-" * len(header))
    for name, s in rows:
        for path in PATHS:
            m = s["measured"][path]
            ratio = s["speedup_vs_seed"][path]
            print(f"{name:46} {path.replace('_', ' '):20} {m['images_per_second']:7.2f} {ratio:7.2f}x "
                  f"{s['model_gflops_per_second'][path]:10.1f} {s['performed_gflops_per_second'][path]:9.1f} "
                  f"{100 * s['performed_fraction_of_peak'][path]:6.1f}% {m['peak_rss_mb']:7.0f}")
    print(f"\nCAE training ({common['cae_epochs']} epochs): seed {cae['seed']['seconds']:.1f} s "
          f"(test MSE {cae['seed']['test_mse']:.4f}), fcnlab {cae['fcnlab']['seconds']:.1f} s "
          f"(test MSE {cae['fcnlab']['test_mse']:.4f})")
    print("train img/s: training images / median epoch time (fcnlab's epoch includes its validation IoU).\n"
          "model GF/s counts the model's FLOPs (train step: 3x forward of trained layers, 1x frozen "
          "encoder), the same for both paths; done GF/s and % peak count what each path performs.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
