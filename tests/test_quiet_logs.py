"""TensorFlow's C++ start-up lines are dropped once fcnlab is imported; real messages still show.

Without fcnlab, `import tensorflow` on a CPU machine prints, even with TF_CPP_MIN_LOG_LEVEL=2,
"WARNING: All log messages before absl::InitializeLog() ...", "I0000 ... oneDNN custom
operations are on ...", "I0000 ... Could not find cuda drivers ..." and, where no NVIDIA driver
is installed, "E0000 ... failed call to cuInit ...". Each scenario runs in a fresh Python (the
lines come once per process); the subprocesses run side by side to keep the file short.
TF_ENABLE_ONEDNN_OPTS=1 makes TensorFlow log its oneDNN note on every x86 CPU.
"""

import os
import platform
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from fcnlab.cae.model import cae_encoder
from fcnlab.core.io import save_model

NOISE = ("absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
         "failed call to cuInit")

STAGE_LIKE = """
import warnings
import fcnlab.seg.model                      # as a stage script does: fcnlab first, then Keras/TensorFlow
import tensorflow as tf
tf.config.list_physical_devices()
print("sum", float(tf.constant(1.5) + 1))
warnings.warn("fcnlab test: a real Python warning")
"""

CAE_TRAINING = """
import numpy as np
from fcnlab.cae.training import reconstruct, train_cae
from fcnlab.core.reproducibility import seed_everything
seed_everything(0)
x = np.random.default_rng(0).random((700, 28, 28, 1), dtype=np.float32)
encoder, decoder = train_cae(x[:600], x[600:], epochs=1, batch_size=32, learning_rate=1e-3)
print("reconstructed", reconstruct(encoder, decoder, x).shape)
"""

# The control for CAE_TRAINING: Keras' own array input under op determinism (what train-cae
# used before) makes TensorFlow log "E0000 ... use_unbounded_threadpool", a TensorFlow bug.
KERAS_ARRAY_FIT = """
import numpy as np
import fcnlab.cae.model as cae
from fcnlab.core.reproducibility import seed_everything
seed_everything(0)
x = np.random.default_rng(0).random((600, 28, 28, 1), dtype=np.float32)   # small arrays are not mapped
model = cae.cae_autoencoder(cae.cae_encoder(), cae.cae_decoder())
model.compile(optimizer="adam", loss="mean_squared_error")
model.fit(x, x, validation_data=(x[:100], x[:100]), epochs=1, batch_size=32, shuffle=True, verbose=0)
"""

TENSORFLOW_ALONE = """
import tensorflow as tf
tf.config.list_physical_devices()
print("sum", float(tf.constant(1.5) + 1))
"""


def python(code_or_args, level: str | None = "unset", **env_extra) -> subprocess.Popen:
    """Start `python -c code` (or `python args...`) with fcnlab importable from this checkout;
    TF_CPP_MIN_LOG_LEVEL is left unset (fcnlab's default applies) unless `level` is given."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_ENABLE_ONEDNN_OPTS": "1", **env_extra}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    if level != "unset":
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scenario's (returncode, stdout, stderr), the processes started together."""
    folder = tmp_path_factory.mktemp("quiet")
    keras.utils.set_random_seed(0)
    save_model(cae_encoder(), folder / "encoder.keras")
    Image.fromarray(np.full((28, 28), 230, np.uint8)).save(folder / "bright.png")
    (folder / "broken.png").write_bytes(b"not an image")

    started = {
        "stage_like": python(STAGE_LIKE),
        "level_0": python(STAGE_LIKE, level="0"),
        "tensorflow_alone": python(TENSORFLOW_ALONE, level="2"),
        "cae_training": python(CAE_TRAINING),
        "keras_array_fit": python(KERAS_ARRAY_FIT),
        "cli": python(["-m", "fcnlab.cli", "encode", str(folder / "bright.png"), str(folder / "broken.png"),
                       "--encoder", str(folder / "encoder.keras")]),
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=300)
        results[name] = (process.returncode, stdout, stderr)
    return results


def test_a_stage_like_import_prints_no_tensorflow_start_up_lines(runs):
    returncode, stdout, stderr = runs["stage_like"]
    assert returncode == 0, stderr
    assert "sum 2.5" in stdout
    for noise in NOISE:
        assert noise not in stderr


def test_python_warnings_still_show(runs):
    _, _, stderr = runs["stage_like"]
    assert "UserWarning: fcnlab test: a real Python warning" in stderr


def test_the_cli_shows_its_warnings_and_errors_but_no_start_up_lines(runs):
    returncode, stdout, stderr = runs["cli"]
    assert returncode == 1                         # one file failed, the other was encoded
    lines = stderr.splitlines()
    assert any(line.startswith("warning: ") and "bright.png: mostly bright" in line for line in lines)
    assert any(line.startswith("error: ") and "broken.png" in line for line in lines)
    assert stdout.count("bright.png,") == 1
    for noise in NOISE:
        assert noise not in stderr


def test_level_0_shows_everything_tensorflow_prints(runs):
    """TF_CPP_MIN_LOG_LEVEL=0 asks for every line (the way to debug TensorFlow's start-up)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("TensorFlow's oneDNN note is an x86 feature")
    returncode, _, stderr = runs["level_0"]
    assert returncode == 0, stderr
    assert "oneDNN custom operations are on" in stderr
    assert "absl::InitializeLog" in stderr


def test_without_fcnlab_tensorflow_prints_them_despite_the_log_level(runs):
    """The control: the lines the tests above look for are really there without fcnlab."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("TensorFlow's oneDNN note is an x86 feature")
    returncode, _, stderr = runs["tensorflow_alone"]
    assert returncode == 0, stderr
    assert "absl::InitializeLog" in stderr
    assert "oneDNN custom operations are on" in stderr


def test_training_the_cae_logs_no_error_looking_line(runs):
    """train-cae's input stream has no parallel `map`, so op determinism logs nothing; the control
    below shows the line Keras' own array input would print."""
    returncode, stdout, stderr = runs["cae_training"]
    assert returncode == 0, stderr
    assert "reconstructed (700, 28, 28, 1)" in stdout
    assert [line for line in stderr.splitlines() if line.startswith(("E0000", "W0000"))] == []
    _, _, control = runs["keras_array_fit"]
    assert "use_unbounded_threadpool" in control
