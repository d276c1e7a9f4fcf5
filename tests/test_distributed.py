"""`train.strategy`: one device, MirroredStrategy, or MultiWorkerMirroredStrategy from TF_CONFIG.

The last test is the real thing on one machine: two worker processes on 127.0.0.1 train the
CAE through the real `stages/train_cae.py`, and must end with the weights a single process
gets from the same global batch and seed, written by the chief only. That holds by design:
both workers shuffle with the same seed (so they agree on each global batch), Keras shards
every global batch of 32 into 16 + 16 (auto-shard by DATA), and the gradients are summed
across workers, so each step is the single process's step up to float rounding. The other
worker stops after `fit`; the chief evaluates and writes alone.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
import yaml

from conftest import ROOT, run_script
from fcnlab.cae.training import train_cae
from fcnlab.core.distribute import STRATEGIES, check_batch_size, is_chief, training_strategy
from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import load_json, load_model, save_arrays
from fcnlab.core.mnist import embedded_mnist
from fcnlab.core.reproducibility import seed_everything

SEVERAL_GPUS = len(tf.config.list_physical_devices("GPU")) > 1
WORKER_TIMEOUT_SECONDS = 300
# Two workers (or replicas) and one process differ only in the order float32 sums are taken
# (half batches, then across workers): measured 1.5e-8 at most after one epoch, while that
# epoch moves a typical weight by 2e-3 to 7e-3 (median per tensor, max 8e-3). 1e-6 is about
# 60 times the rounding and over 1000 times below what training changes.
WEIGHT_ATOL = 1e-6


def tf_config(ports, index, chief=False):
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    if chief:
        cluster = {"chief": cluster["worker"][:1], "worker": cluster["worker"][1:]}
    task = {"type": "chief", "index": 0} if chief and index == 0 else \
        {"type": "worker", "index": index - 1 if chief else index}
    return json.dumps({"cluster": cluster, "task": task})


# --- Choosing a strategy ----------------------------------------------------------------------


@pytest.mark.skipif(SEVERAL_GPUS, reason="auto picks MirroredStrategy with several GPUs")
def test_auto_on_one_device_is_the_default_strategy():
    strategy = training_strategy("auto")
    assert strategy is tf.distribute.get_strategy()
    assert strategy.num_replicas_in_sync == 1


def test_mirrored_on_the_cpu_trains_like_no_strategy():
    images = (embedded_mnist()[0][:64].astype(np.float32) / 255.0)[..., None]
    weights = {}
    for name in ("auto", "mirrored"):
        strategy = training_strategy(name)
        seed_everything(0)
        encoder, decoder = train_cae(images[:48], images[48:], epochs=1, batch_size=16,
                                     learning_rate=1e-3, strategy=strategy)
        weights[name] = encoder.get_weights() + decoder.get_weights()
    assert isinstance(strategy, tf.distribute.MirroredStrategy)
    for mirrored, plain in zip(weights["mirrored"], weights["auto"]):
        np.testing.assert_allclose(mirrored, plain, rtol=0, atol=WEIGHT_ATOL)


# What a machine with two GPUs runs: MirroredStrategy over two devices, here two logical CPUs
# (they must be declared before TensorFlow starts, hence a fresh process).
TWO_REPLICAS_SCRIPT = """
import sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fcnlab.cae.training import train_cae
from fcnlab.core.mnist import embedded_mnist
from fcnlab.core.reproducibility import seed_everything
images = (embedded_mnist()[0][:96].astype(np.float32) / 255.0)[..., None]
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
seed_everything(0)
encoder, decoder = train_cae(images[:64], images[64:], epochs=1, batch_size=16, learning_rate=1e-3,
                             strategy=strategy)
np.savez(sys.argv[1], *(encoder.get_weights() + decoder.get_weights()))
"""


@pytest.mark.integration
def test_mirrored_over_two_replicas_trains_like_one_device(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    log = tmp_path / "two_replicas.log"
    with open(log, "w") as out:
        two = subprocess.Popen([sys.executable, "-c", TWO_REPLICAS_SCRIPT, str(tmp_path / "two.npz")],
                               cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        images = (embedded_mnist()[0][:96].astype(np.float32) / 255.0)[..., None]  # meanwhile, here:
        seed_everything(0)
        encoder, decoder = train_cae(images[:64], images[64:], epochs=1, batch_size=16, learning_rate=1e-3)
        one = encoder.get_weights() + decoder.get_weights()
        assert two.wait(timeout=300) == 0, log.read_text()[-3000:]
    finally:
        if two.poll() is None:
            two.kill()
            two.wait()
    with np.load(tmp_path / "two.npz") as saved:
        two_replicas = [saved[name] for name in saved.files]
    assert len(two_replicas) == len(one) == 12
    for a, b in zip(two_replicas, one):
        np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_ATOL)


class Replicas:
    """Stands in for a strategy: `check_batch_size` reads only its number of replicas."""

    def __init__(self, n):
        self.num_replicas_in_sync = n


@pytest.mark.parametrize("batch_size, sizes, problem", [
    (33, {"train": 264}, "cae.batch_size is 33, which does not split evenly over the 2 replicas"),
    (32, {"train": 257}, "the train split's 257 examples would leave a batch of 1 "),
    (32, {"train": 256, "test": 15}, "the test split's 15 examples would leave a batch of 15 "),
])
def test_a_global_batch_that_would_split_badly_over_replicas_is_refused(batch_size, sizes, problem):
    with pytest.raises(FcnlabError, match="set cae.batch_size in params.yaml to a multiple of 2") as err:
        check_batch_size(batch_size, Replicas(2), "cae.batch_size", **sizes)
    assert problem in str(err.value)


def test_a_global_batch_that_splits_well_or_one_replica_passes():
    check_batch_size(32, Replicas(2), "cae.batch_size", train=255, test=16)  # last batches 31 and 16
    check_batch_size(33, Replicas(1), "cae.batch_size", train=257, test=1)


def test_multi_worker_without_tf_config_says_what_to_set(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(FcnlabError, match="needs the TF_CONFIG environment variable, which is not set; "
                                          "set it on every machine") as err:
        training_strategy("multi_worker")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("value, problem", [
    ("{not json", "is not valid JSON"),
    ('{"task": {"type": "worker", "index": 0}}', 'has no "cluster"'),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "has task None"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "has task"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 1}}', "has task index 1"),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}', "has cluster job"),
    ('{"cluster": {"ps": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "has cluster job 'ps'"),
])
def test_multi_worker_with_a_malformed_tf_config_says_what_is_wrong(monkeypatch, value, problem):
    monkeypatch.setenv("TF_CONFIG", value)
    with pytest.raises(FcnlabError, match="TF_CONFIG") as err:
        training_strategy("multi_worker")
    assert problem in str(err.value) and "set it on every machine" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["Auto", "horovod", ""])
def test_an_unknown_strategy_is_refused_naming_the_choices(name):
    with pytest.raises(FcnlabError, match="train.strategy must be one of auto, mirrored, multi_worker"):
        training_strategy(name)


def test_the_strategies_are_the_three_documented_in_params_yaml():
    assert STRATEGIES == ("auto", "mirrored", "multi_worker")
    train_section = (ROOT / "params.yaml").read_text().split("\ntrain:", 1)[1]
    strategy_line = next(line for line in train_section.splitlines() if line.strip().startswith("strategy:"))
    assert "auto | mirrored | multi_worker" in strategy_line


# --- Who writes the outputs -------------------------------------------------------------------


@pytest.mark.parametrize("config, chief", [
    (None, True),                                             # a single process
    (tf_config([1, 2], index=0), True),                       # worker 0 when there is no chief
    (tf_config([1, 2], index=1), False),
    (tf_config([1, 2, 3], index=0, chief=True), True),        # the chief itself
    (tf_config([1, 2, 3], index=1, chief=True), False),       # worker 0 when there is a chief
    (tf_config([1, 2, 3], index=2, chief=True), False),
])
def test_is_chief_follows_tf_config(monkeypatch, config, chief):
    if config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", config)
    assert is_chief() is chief


def test_a_single_process_strategy_is_the_chief_whatever_tf_config_says(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", tf_config([1, 2], index=1))
    assert is_chief(tf.distribute.get_strategy()) is True


# --- The stage ----------------------------------------------------------------------------------


@pytest.fixture
def cae_workspace(tmp_path):
    """Prepared digits (256 train, 64 test) and a params file for a 1-epoch, batch-32 run."""
    images, labels = embedded_mnist()
    x = (images[:320].astype(np.float32) / 255.0)[..., None]
    save_arrays(tmp_path / "data", train_x=x[:256], test_x=x[256:], test_y=labels[256:320])

    def params_file(strategy):
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["cae"].update(epochs=1, batch_size=32, seed=0)
        params["train"] = {"strategy": strategy}
        path = tmp_path / f"params_{strategy}.yaml"
        path.write_text(yaml.safe_dump(params))
        return path

    def stage_args(strategy, out):
        return ["--params", str(params_file(strategy)), "--data", str(tmp_path / "data"),
                "--encoder", str(out / "encoder.keras"), "--decoder", str(out / "decoder.keras"),
                "--live", str(out / "live"), "--metrics", str(out / "metrics.json"),
                "--details", str(out / "details.json"), "--figure", str(out / "reconstructions.png")]

    return stage_args


@pytest.mark.integration
def test_stage_refuses_multi_worker_without_tf_config(tmp_path, cae_workspace):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    result = subprocess.run([sys.executable, str(ROOT / "stages" / "train_cae.py"),
                             *cae_workspace("multi_worker", tmp_path / "out")], cwd=ROOT, timeout=300,
                            env={**env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: train.strategy multi_worker needs the TF_CONFIG environment variable")
    assert not (tmp_path / "out").exists()


def free_ports(n):
    """n ports the OS calls free now (bound to port 0, then released for the workers to take)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.mark.integration
def test_two_workers_train_like_one_process_and_only_the_chief_writes(tmp_path, cae_workspace):
    codes, outputs, single = run_two_workers_and_one_process("train_cae.py", cae_workspace, tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    assert codes == [0, 0], "\n\n".join(out[-3000:] for out in outputs)

    chief, other = tmp_path / "worker0", tmp_path / "worker1"
    assert sorted(p.relative_to(chief).as_posix() for p in chief.rglob("*") if p.is_file()) == [
        "decoder.keras", "details.json", "encoder.keras", "live/metrics.json", "live/plots/metrics/eval/loss.tsv",
        "live/plots/metrics/train/loss.tsv", "metrics.json", "reconstructions.png"]
    assert not other.exists(), sorted(other.rglob("*"))
    assert "non-chief worker" in outputs[1]

    reference = tmp_path / "single"
    for part in ("encoder", "decoder"):
        ours = load_model(chief / f"{part}.keras").get_weights()
        theirs = load_model(reference / f"{part}.keras").get_weights()
        assert len(ours) == len(theirs) == 6
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, rtol=0, atol=WEIGHT_ATOL)
    # The metrics come from predict, whose per-worker halves are gathered back in order.
    ours, theirs = load_json(chief / "details.json"), load_json(reference / "details.json")
    for split in ("train", "test"):
        assert ours[split]["mse"] == pytest.approx(theirs[split]["mse"], abs=1e-6)


# --- FCN-8s: two real train-fcn processes ------------------------------------------------------


@pytest.fixture
def fcn_workspace(tmp_path):
    """Tiny demo scenes (8 train, 4 val at 64 px) prepared by the real prepare-seg, and params for
    one epoch of a narrow FCN-8s with a global batch of 4 (2 + 2 on two workers)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["seg"].update(source="demo", demo={"image_size": 64, "n_train": 8, "n_val": 4, "n_test": 4})
    # Cross-entropy: a per-pixel loss, so half batches on two workers sum to the whole batch's
    # gradient (Dice is one number per batch: each worker's Dice covers its half, fcnlab.seg.losses).
    # Augmentation on: the default stream, whose order and draws come from the seed, not TF state.
    params["fcn"].update(head_width=8, epochs=1, batch_size=4, patch_size=None, augment=True,
                         loss="crossentropy", seed=0)
    prepared = run_script("prepare_seg.py", "--params", str(write_params(tmp_path, params, "prepare")),
                          "--out", str(tmp_path / "data"), "--summary", str(tmp_path / "summary.json"))
    assert prepared.returncode == 0, prepared.stderr

    def stage_args(strategy, out):
        path = write_params(tmp_path, {**params, "train": {"strategy": strategy}}, strategy)
        return ["--params", str(path), "--data", str(tmp_path / "data"), "--model", str(out / "model.keras"),
                "--geometry", str(out / "model.geometry.json"), "--live", str(out / "live"),
                "--epochs", str(out / "epochs.csv"), "--metrics", str(out / "metrics.json"),
                "--details", str(out / "details.json")]

    return stage_args


def write_params(folder, params, name):
    path = folder / f"params_{name}.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def run_two_workers_and_one_process(script, stage_args, tmp_path):
    """Start two workers of `script` on 127.0.0.1 and, meanwhile, the one-process reference.
    Returns (worker exit codes, worker logs, the reference's CompletedProcess)."""
    ports = free_ports(2)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    workers, logs = [], []
    started = time.monotonic()
    try:
        for index in range(2):
            logs.append(open(tmp_path / f"worker{index}.log", "w"))
            workers.append(subprocess.Popen(
                [sys.executable, str(ROOT / "stages" / script), *stage_args("multi_worker", tmp_path / f"worker{index}")],
                cwd=ROOT, env={**env, "TF_CONFIG": tf_config(ports, index)},
                stdout=logs[-1], stderr=subprocess.STDOUT, text=True))
        single = run_script(script, *stage_args("auto", tmp_path / "single"), timeout=300,
                            env_extra={"TF_CONFIG": ""})
        deadline = started + WORKER_TIMEOUT_SECONDS
        codes = [worker.wait(timeout=max(1.0, deadline - time.monotonic())) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        for log in logs:
            log.close()
    print(f"two workers and the reference: {time.monotonic() - started:.1f} s")
    return codes, [(tmp_path / f"worker{i}.log").read_text() for i in range(2)], single


@pytest.mark.integration
def test_two_fcn_workers_train_like_one_process_and_only_the_chief_writes(tmp_path, fcn_workspace):
    """Under the strategy FusedAdam falls back to Keras' Adam (the one process keeps FusedAdam):
    the same numbers up to float rounding, which is what the weight comparison checks."""
    codes, outputs, single = run_two_workers_and_one_process("train_fcn.py", fcn_workspace, tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    assert codes == [0, 0], "\n\n".join(out[-3000:] for out in outputs)

    chief, other, reference = tmp_path / "worker0", tmp_path / "worker1", tmp_path / "single"
    assert sorted(p.name for p in chief.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert not other.exists(), sorted(other.rglob("*"))
    assert "non-chief worker" in outputs[1]
    ours, theirs = load_model(chief / "model.keras").get_weights(), load_model(reference / "model.keras").get_weights()
    assert len(ours) == len(theirs) > 30
    moved = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, fcn8s_initial_weights()))
    assert moved > 100 * WEIGHT_ATOL           # training changed the weights: the comparison means something
    # Adam divides each step by sqrt(v): where a gradient is near zero, the rounding of the two
    # summed halves can move that weight's step by a fraction of the learning rate, and a busy
    # machine changes which weights (measured: up to 5.5e-4, on 0.2 % to 4 % of them). Most stay
    # equal to float rounding; a run on other batches would move most of them differently.
    differences = np.concatenate([np.abs(a - b).ravel() for a, b in zip(ours, theirs)])
    print(f"weights: max difference {differences.max():.2e}, over 1e-6 on {np.mean(differences > WEIGHT_ATOL):.1%}")
    assert np.median(differences) <= WEIGHT_ATOL
    assert load_json(chief / "metrics.json")["kept_epoch"] == load_json(reference / "metrics.json")["kept_epoch"]


def fcn8s_initial_weights():
    """The weights train-fcn starts from (same seed, same architecture as the fixture's params)."""
    from fcnlab.seg.model import fcn8s_vgg16

    seed_everything(0)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())["fcn"]
    return fcn8s_vgg16(n_classes=2, encoder_weights="none", head_width=8, freeze_encoder=params["freeze_encoder"],
                       score_relu=params["score_relu"], vgg_preprocessing=params["vgg_preprocessing"]).get_weights()
