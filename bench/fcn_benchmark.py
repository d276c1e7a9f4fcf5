"""Side-by-side benchmark: the seed's training/inference code against fcnlab's, on one machine, in one run.

    python bench/fcn_benchmark.py                   # full run (about 10 minutes on 2 CPU cores)
    python bench/fcn_benchmark.py --quick           # smaller, for a smoke test

For two FCN configurations -- the seed's (224 px, 4096-wide head, frozen encoder, batch 5) and
the project's default from params.yaml -- it times, on the same generated images:

    seed train      the seed's `model.fit` on NumPy arrays (whole network every epoch)
    fcnlab train    `fcnlab.fcn_training.train_fcn` (frozen encoder: features cached once)
    seed predict    the seed's `model.predict(test_imgs[[i]])`, one image per call
    fcnlab predict  `fcnlab.fcn_training.predict_foreground` (batched)

plus the CAE's training (seed vs fcnlab) and the machine's practical FP32 peak (a large
matmul). Every measurement runs in its own subprocess (so peak RSS is that path's alone),
discards a warm-up, and reports the median of several repeats. Achieved GFLOP/s counts the
model's convolution FLOPs (`fcnlab.fcn.forward_flops`; a training step of a trainable layer
costs 3x its forward pass, a frozen encoder 1x), as a fraction of the measured peak.
Writes the table to stdout and everything to bench/results/fcn_benchmark.json.
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
    import tensorflow as tf

    n = cfg.get("matmul_size", 2048)
    a = tf.random.normal((n, n), seed=1)
    b = tf.random.normal((n, n), seed=2)
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()
    times = []
    for _ in range(cfg["repeats"] * 3):
        start = time.perf_counter()
        matmul().numpy()
        times.append(time.perf_counter() - start)
    return {"gflops": 2 * n**3 / statistics.median(times) / 1e9}


def _seg_data(cfg):
    from fcnlab.seg_data import demo_segmentation

    return demo_segmentation(cfg["n_train"], 4, cfg["n_test"], cfg["image_size"], seed=0)


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
    from fcnlab.fcn import fcn8s_vgg16
    from fcnlab.fcn_training import train_fcn

    keras.utils.set_random_seed(0)
    data = _seg_data(cfg)
    model = fcn8s_vgg16(head_width=cfg["head_width"], freeze_encoder=cfg["freeze_encoder"])
    timer = EpochTimer()
    start = time.perf_counter()
    train_fcn(model, data.train_images, data.train_masks, data.val_images, data.val_masks,
              epochs=1 + cfg["repeats"], batch_size=cfg["batch_size"], learning_rate=1e-4,
              callbacks=[timer.callback])
    total = time.perf_counter() - start
    epoch = statistics.median(timer.seconds[1:])
    setup = total - sum(timer.seconds)            # feature caching + graph building
    epochs = cfg["epochs"]
    return {"epoch_seconds": epoch, "setup_seconds": setup,
            "images_per_second": cfg["n_train"] * epochs / (setup + epochs * epoch)}


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
    from fcnlab.fcn import fcn8s_vgg16
    from fcnlab.fcn_training import predict_foreground

    keras.utils.set_random_seed(0)
    images = _seg_data(cfg).test_images
    model = fcn8s_vgg16(head_width=cfg["head_width"])
    return _prediction_rate(lambda batch: predict_foreground(model, batch), images, cfg["repeats"])


def _prediction_rate(predict, images, repeats: int) -> dict:
    """Images per second of `predict(images)`: a warm-up on two images, then the median of repeats."""
    predict(images[:2])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(images)
        times.append(time.perf_counter() - start)
    return {"images_per_second": len(images) / statistics.median(times)}


def _mnist(cfg):
    from fcnlab.mnist_data import load_mnist, prepare_mnist_subset

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
    from fcnlab.cae_training import reconstruct, reconstruction_metrics, train_cae
    from fcnlab.reproducibility import seed_everything

    seed_everything(0)
    data = _mnist(cfg)
    start = time.perf_counter()
    encoder, decoder = train_cae(data.train_x, data.test_x, cfg["cae_epochs"], 32, 1e-3)
    seconds = time.perf_counter() - start
    return {"seconds": seconds,
            "test_mse": reconstruction_metrics(data.test_x, reconstruct(encoder, decoder, data.test_x))["mse"]}


WORKERS = {name[len("worker_"):]: fn for name, fn in globals().items() if name.startswith("worker_")}


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
    """Forward GFLOPs per image of the encoder and of the head at this size/width."""
    from fcnlab.fcn import encoder_forward_flops, head_forward_flops

    return {"encoder": encoder_forward_flops(cfg["image_size"]) / 1e9,
            "head": head_forward_flops(cfg["image_size"], cfg["head_width"]) / 1e9}


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

    peak = run_worker("peak", {**common, "matmul_size": 512 if args.quick else 2048})["gflops"]
    rows, results = [], {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                     "python": platform.python_version()},
                         "peak_fp32_gflops": peak, "configs": {}}
    for name, cfg in configs.items():
        cfg = {**common, **cfg}
        flops = gflop_counts(cfg)
        encoder_factor = 1 if cfg["freeze_encoder"] else 3
        step_gflop = encoder_factor * flops["encoder"] + 3 * flops["head"]      # one image, one training step
        measured = {path: run_worker(path, cfg) for path in
                    ("seed_train", "fcnlab_train", "seed_predict", "fcnlab_predict")}
        seed_train, ours = measured["seed_train"], measured["fcnlab_train"]
        # fcnlab's cached path does the encoder once: per epoch it runs the head's 3x only.
        ours_epoch_gflop = (3 * flops["head"] if cfg["freeze_encoder"] else step_gflop) * cfg["n_train"]
        summary = {
            "config": cfg, "gflop_per_image": flops, "measured": measured,
            "train_speedup": ours["images_per_second"] / seed_train["images_per_second"],
            "predict_speedup": measured["fcnlab_predict"]["images_per_second"]
            / measured["seed_predict"]["images_per_second"],
            "seed_train_fraction_of_peak": step_gflop * seed_train["images_per_second"] / peak,
            "fcnlab_train_epoch_fraction_of_peak": ours_epoch_gflop / ours["epoch_seconds"] / peak,
        }
        results["configs"][name] = summary
        rows.append((name, summary))

    cae = {"seed": run_worker("seed_cae", common), "fcnlab": run_worker("fcnlab_cae", common)}
    results["cae"] = cae

    print(f"\nMachine: {results['machine']}; practical FP32 peak (matmul): {peak:.1f} GFLOP/s")
    header = f"{'configuration':46} {'path':16} {'img/s':>8} {'vs seed':>8} {'GFLOP/s':>8} {'% peak':>7} {'RSS MB':>7}"
    print(header)
    print("-" * len(header))
    for name, s in rows:
        m = s["measured"]
        cfg = s["config"]
        step = (1 if cfg["freeze_encoder"] else 3) * s["gflop_per_image"]["encoder"] + 3 * s["gflop_per_image"]["head"]
        fwd = s["gflop_per_image"]["encoder"] + s["gflop_per_image"]["head"]
        lines = [
            ("seed train", m["seed_train"]["images_per_second"], 1.0, step * m["seed_train"]["images_per_second"],
             m["seed_train"]["peak_rss_mb"]),
            ("fcnlab train", m["fcnlab_train"]["images_per_second"], s["train_speedup"],
             s["fcnlab_train_epoch_fraction_of_peak"] * peak, m["fcnlab_train"]["peak_rss_mb"]),
            ("seed predict", m["seed_predict"]["images_per_second"], 1.0, fwd * m["seed_predict"]["images_per_second"],
             m["seed_predict"]["peak_rss_mb"]),
            ("fcnlab predict", m["fcnlab_predict"]["images_per_second"], s["predict_speedup"],
             fwd * m["fcnlab_predict"]["images_per_second"], m["fcnlab_predict"]["peak_rss_mb"]),
        ]
        for path, ips, ratio, gflops, rss in lines:
            print(f"{name:46} {path:16} {ips:8.2f} {ratio:7.2f}x {gflops:8.1f} {100 * gflops / peak:6.1f}% {rss:7.0f}")
    print(f"\nCAE training ({common['cae_epochs']} epochs): seed {cae['seed']['seconds']:.1f} s "
          f"(test MSE {cae['seed']['test_mse']:.4f}), fcnlab {cae['fcnlab']['seconds']:.1f} s "
          f"(test MSE {cae['fcnlab']['test_mse']:.4f})")
    print("fcnlab train img/s is amortised over the configured epochs, feature caching included; its "
          "GFLOP/s is per epoch (head only when frozen).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
