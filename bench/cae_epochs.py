"""How many epochs, and what batch size, does the CAE need? Measured on the pipeline's own data.

    nice -n 5 python bench/cae_epochs.py                          # the default grid
    python bench/cae_epochs.py --epochs 10 20 --batch-sizes 32 --seeds 0 --check-resume

Loads MNIST exactly as params.yaml does (embedded source, digits 1/5/6, test_fraction 0.2,
seed 0), then for every (batch size, learning rate, cae seed) trains the CAE once, for the
largest epoch count asked, with `fcnlab.cae.training.train_cae`. At each epoch count in
`--epochs` a callback stops the clock and measures the model as it stands:

    train s      wall seconds from the start of `train_cae` (model build, compile, every
                 epoch with its validation pass), minus the time spent measuring
    s/epoch      the mean seconds of the epochs so far
    test MSE     reconstruction MSE on the test split, and its PSNR in dB
    5-NN acc     test latents classified by their k nearest train latents (`knn_accuracy`)

One long run gives every shorter run's numbers: Adam's learning rate is constant and Keras
shuffles with the same seeded stream, so the weights after epoch E of an 80-epoch run are the
weights of an E-epoch run. `--check-resume` trains the first grid point again for its
smallest epoch count alone and prints whether the two measurements agree.

Prints one table row per measurement and writes them all to bench/results/cae_epochs.json (--out).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fcnlab.cae.training import reconstruct, reconstruction_metrics, train_cae  # noqa: E402
from fcnlab.cae.latent import encode, knn_accuracy  # noqa: E402
from fcnlab.cae.data import prepare_mnist_subset  # noqa: E402
from fcnlab.core.mnist import load_mnist  # noqa: E402
from fcnlab.core.reproducibility import seed_everything  # noqa: E402

DIGITS = [1, 5, 6]      # params.yaml mnist.digits
TEST_FRACTION = 0.2     # params.yaml mnist.test_fraction
SPLIT_SEED = 0          # params.yaml mnist.seed
KNN_K = 5               # params.yaml latent.knn_k
COLUMNS = ("epochs", "batch", "lr", "seed", "train_s", "s_per_epoch", "test_mse", "test_psnr_db", "knn_acc")


def main():
    args = parse_args()
    data = prepare_mnist_subset(*load_mnist("embedded", TEST_FRACTION, SPLIT_SEED),
                                digits=DIGITS, origin="embedded")
    print(f"train {len(data.train_x)} digits, test {len(data.test_x)} digits; k = {KNN_K}")
    print(_row(COLUMNS), flush=True)

    rows = []
    for batch_size in args.batch_sizes:
        for learning_rate in args.learning_rates:
            for seed in args.seeds:
                rows += measure_run(data, sorted(args.epochs), batch_size, learning_rate, seed)
    if args.check_resume:
        check_resume(data, rows[0])

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n_train": len(data.train_x), "n_test": len(data.test_x),
                               "knn_k": KNN_K, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 20, 30, 50, 80])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[0.001])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--check-resume", action="store_true",
                        help="retrain the first point for its epoch count alone and compare")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "cae_epochs.json"))
    return parser.parse_args()


def measure_run(data, epoch_counts, batch_size, learning_rate, seed):
    """Train once for max(epoch_counts) epochs; return one measured row per epoch count."""
    checkpoints = Checkpoints(data, epoch_counts, batch_size, learning_rate, seed)
    seed_everything(seed)
    checkpoints.start()
    with contextlib.redirect_stdout(io.StringIO()):  # train_cae's per-epoch Keras log
        train_cae(data.train_x, data.test_x, max(epoch_counts), batch_size, learning_rate,
                  callbacks=[checkpoints.callback()], seed=seed)
    return checkpoints.rows


class Checkpoints:
    """Stops the clock at the chosen epoch counts and measures the autoencoder there."""

    def __init__(self, data, epoch_counts, batch_size, learning_rate, seed):
        self.data, self.epoch_counts = data, set(epoch_counts)
        self.fixed = {"batch": batch_size, "lr": learning_rate, "seed": seed}
        self.rows = []

    def start(self):
        self.started, self.measuring_s = time.perf_counter(), 0.0

    def callback(self):
        import keras

        owner = self

        class MeasureAtCheckpoints(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 in owner.epoch_counts:
                    owner.measure(self.model, epoch + 1)

        return MeasureAtCheckpoints()

    def measure(self, autoencoder, epochs):
        now = time.perf_counter()
        train_s = now - self.started - self.measuring_s
        encoder, decoder = autoencoder.get_layer("cae_encoder"), autoencoder.get_layer("cae_decoder")
        self.rows.append({"epochs": epochs, **self.fixed, **measure_model(self.data, encoder, decoder),
                          "train_s": round(train_s, 2), "s_per_epoch": round(train_s / epochs, 3)})
        print(_row([self.rows[-1][c] for c in COLUMNS]), file=sys.__stdout__, flush=True)
        self.measuring_s += time.perf_counter() - now


def measure_model(data, encoder, decoder) -> dict:
    test = reconstruction_metrics(data.test_x, reconstruct(encoder, decoder, data.test_x))
    accuracy = knn_accuracy(encode(encoder, data.train_x), data.train_y,
                            encode(encoder, data.test_x), data.test_y, KNN_K)
    return {"test_mse": test["mse"], "test_psnr_db": test["psnr_db"], "knn_acc": round(accuracy, 4)}


def check_resume(data, first):
    """Train `first`'s setting for its epoch count alone: its metrics must match the long run's."""
    alone = measure_run(data, [first["epochs"]], first["batch"], first["lr"], first["seed"])[0]
    same = all(alone[key] == first[key] for key in ("test_mse", "knn_acc"))
    print(f"resume check: {first['epochs']} epochs alone {'matches' if same else 'DIFFERS FROM'} "
          f"the long run's checkpoint (MSE {alone['test_mse']} vs {first['test_mse']}, "
          f"5-NN {alone['knn_acc']} vs {first['knn_acc']})")


def _row(values) -> str:
    return "  ".join(f"{v:>12}" if isinstance(v, str) else f"{v:>12g}" for v in values)


if __name__ == "__main__":
    main()
