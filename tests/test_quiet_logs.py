"""TensorFlow is quieted explicitly where a stage or the `fcnlab` command starts; `import fcnlab`
changes nothing.

`fcnlab.core.quiet.quiet_tensorflow()` sets TF_CPP_MIN_LOG_LEVEL (3 unless the user set it) and
TensorFlow's Python logger before TensorFlow loads. Each scenario runs in a fresh Python, the
subprocesses side by side. The user's environment is kept, except TF_CPP_MIN_LOG_LEVEL, which
the tests set or unset (conftest.run_script sets it to 3 for every other test).

What no setting can hide: the lines TensorFlow's shared libraries print while the dynamic loader
runs their initialisers, before any setting is read (see LOAD_TIME_LINE and the last test).
"""

import ast
import os
import platform
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT
from fcnlab.cae.model import cae_encoder
from fcnlab.core.io import save_arrays, save_model
from fcnlab.core.mnist import embedded_mnist

# Printed by libtensorflow_framework / libtensorflow_cc as they load (once each), whatever the level.
LOAD_TIME_LINE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|I\d{4} [\d:.]+ +\d+ (port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers on your machine)")
CPU_NOTE = "This TensorFlow binary is optimized to use available CPU instructions"   # INFO, after loading
CPP_LOG_LINE = re.compile(r"[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] ")                      # absl's format

IMPORT_FCNLAB = """
import os, sys
def state():
    return (list(sys.meta_path), dict(os.environ), os.readlink("/proc/self/fd/2"),
            (os.fstat(2).st_dev, os.fstat(2).st_ino), sys.stderr)
before = state()
import fcnlab, fcnlab.core.quiet, fcnlab.core.stage, fcnlab.core.params, fcnlab.cli
after = state()
for name, old, new in zip(("sys.meta_path", "os.environ", "fd 2", "fd 2 file", "sys.stderr"), before, after):
    assert old == new, (name, old, new)
print("unchanged", fcnlab.__version__)
"""

PYTHON_LOGGING = """
import warnings
from fcnlab.core.quiet import quiet_tensorflow
quiet_tensorflow()
import tensorflow as tf
tf.get_logger().warning("fcnlab test: a TensorFlow note")
tf.get_logger().error("fcnlab test: a TensorFlow error")
warnings.warn("fcnlab test: a real Python warning")
print("sum", float(tf.constant(1.5) + 1))
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

LOAD_TENSORFLOW_LIBRARY = """
import ctypes, pathlib, importlib.util
folder = pathlib.Path(importlib.util.find_spec("tensorflow").submodule_search_locations[0])
ctypes.CDLL(str(folder / "libtensorflow_framework.so.2"))   # only the dynamic loader runs: no TensorFlow code
"""


def python(args, level: str | None, cwd=ROOT, **env_extra) -> subprocess.Popen:
    """Start `python args...` with fcnlab importable from this checkout and TF_CPP_MIN_LOG_LEVEL
    set to `level` (None: unset, so fcnlab's default applies)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_extra}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    env.pop("FCNLAB_DEBUG", None)
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def unexplained_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if not LOAD_TIME_LINE.match(line)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every scenario's (returncode, stdout, stderr), the processes started together."""
    folder = tmp_path_factory.mktemp("quiet")
    keras.utils.set_random_seed(0)
    save_model(cae_encoder(), folder / "encoder.keras")
    Image.fromarray(np.full((28, 28), 230, np.uint8)).save(folder / "bright.png")
    (folder / "broken.png").write_bytes(b"not an image")

    images, labels = embedded_mnist()                   # train-cae on 256 digits for one epoch
    x = (images[:320].astype(np.float32) / 255.0)[..., None]
    save_arrays(folder / "digits", train_x=x[:256], test_x=x[256:], test_y=labels[256:320])
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["cae"].update(epochs=1, batch_size=32)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    out = folder / "train_cae"
    train_cae = [str(ROOT / "stages" / "train_cae.py"), "--params", str(folder / "params.yaml"),
                 "--data", str(folder / "digits"), "--encoder", str(out / "encoder.keras"),
                 "--decoder", str(out / "decoder.keras"), "--live", str(out / "live"),
                 "--metrics", str(out / "metrics.json"), "--details", str(out / "details.json"),
                 "--figure", str(out / "reconstructions.png")]
    encode = ["-m", "fcnlab.cli", "encode", str(folder / "bright.png"), str(folder / "broken.png"),
              "--encoder", str(folder / "encoder.keras")]

    started = {
        "import_fcnlab": python(["-c", IMPORT_FCNLAB], level=None),
        "stage": python(train_cae, level=None, cwd=folder),
        "cli": python(encode, level=None),
        "cli_level_0": python(encode, level="0", TF_ENABLE_ONEDNN_OPTS="1"),
        "python_logging": python(["-c", PYTHON_LOGGING], level=None),
        "cae_training": python(["-c", CAE_TRAINING], level="2"),
        "keras_array_fit": python(["-c", KERAS_ARRAY_FIT], level="2"),
        "library_level_0": python(["-c", LOAD_TENSORFLOW_LIBRARY], level="0", TF_ENABLE_ONEDNN_OPTS="1"),
        "library_level_3": python(["-c", LOAD_TENSORFLOW_LIBRARY], level="3", TF_ENABLE_ONEDNN_OPTS="1"),
    }
    results = {}
    for name, process in started.items():
        stdout, stderr = process.communicate(timeout=600)
        results[name] = (process.returncode, stdout, stderr)
    return results


@pytest.mark.integration
def test_import_fcnlab_leaves_import_machinery_environment_and_stderr_alone(runs):
    returncode, stdout, stderr = runs["import_fcnlab"]
    assert returncode == 0, stderr
    assert stdout.startswith("unchanged ")


@pytest.mark.integration
def test_a_stage_prints_no_tensorflow_line_but_the_load_time_ones(runs):
    """train-cae, run as DVC runs it: TensorFlow loads, finds no GPU, trains; its C++ and Python
    loggers say nothing (no CPU-instructions note, no `failed call to cuInit`)."""
    returncode, stdout, stderr = runs["stage"]
    assert returncode == 0, stderr
    assert "train-cae: test MSE" in stdout
    assert unexplained_lines(stderr) == []


@pytest.mark.integration
def test_the_cli_shows_its_warnings_and_errors_but_no_tensorflow_lines(runs):
    returncode, stdout, stderr = runs["cli"]
    assert returncode == 1                         # one file failed, the other was encoded
    lines = unexplained_lines(stderr)
    assert any(line.startswith("warning: ") and "bright.png: mostly bright" in line for line in lines)
    assert any(line.startswith("error: ") and "broken.png" in line for line in lines)
    assert not [line for line in lines if CPP_LOG_LINE.match(line) or CPU_NOTE in line]
    assert stdout.count("bright.png,") == 1


@pytest.mark.integration
def test_level_0_set_by_the_user_shows_what_the_default_hides(runs):
    """TF_CPP_MIN_LOG_LEVEL=0 asks for every line (the way to debug TensorFlow's start-up)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("TensorFlow's CPU-instructions note is an x86 feature")
    returncode, _, stderr = runs["cli_level_0"]
    assert returncode == 1
    assert CPU_NOTE in stderr
    assert "oneDNN custom operations are on" in stderr
    assert CPU_NOTE not in runs["cli"][2]


@pytest.mark.integration
def test_python_warnings_and_tensorflow_errors_still_show(runs):
    returncode, stdout, stderr = runs["python_logging"]
    assert returncode == 0, stderr
    assert "sum 2.5" in stdout
    assert "UserWarning: fcnlab test: a real Python warning" in stderr
    assert "fcnlab test: a TensorFlow error" in stderr
    assert "fcnlab test: a TensorFlow note" not in stderr


@pytest.mark.integration
def test_training_the_cae_logs_no_error_looking_line(runs):
    """At level 2 (errors shown), train-cae's input stream has no parallel `map`, so op
    determinism logs nothing; the control below shows the line Keras' own array input would print."""
    returncode, stdout, stderr = runs["cae_training"]
    assert returncode == 0, stderr
    assert "reconstructed (700, 28, 28, 1)" in stdout
    assert [line for line in stderr.splitlines() if line.startswith(("E0000", "W0000"))
            and "failed call to cuInit" not in line] == []      # no NVIDIA driver here: that one is expected
    _, _, control = runs["keras_array_fit"]
    assert "use_unbounded_threadpool" in control


@pytest.mark.integration
def test_the_load_time_lines_come_before_any_setting_is_read(runs):
    """Why LOAD_TIME_LINE is allowed above: loading TensorFlow's library, with no TensorFlow code
    run, prints the same lines at level 3 as at level 0. Only redirecting file descriptor 2
    could drop them, and fcnlab leaves its streams alone."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=1 makes the oneDNN note certain on x86 only")
    shown = {}
    for level in ("0", "3"):
        returncode, _, stderr = runs[f"library_level_{level}"]
        assert returncode == 0, stderr
        shown[level] = [CPP_LOG_LINE.sub("", line) for line in stderr.splitlines()]
    assert any("oneDNN custom operations are on" in line for line in shown["3"])
    assert shown["3"] == shown["0"]
    assert all(LOAD_TIME_LINE.match(line) for line in runs["library_level_3"][2].splitlines())


def test_every_stage_script_quiets_tensorflow_before_its_imports():
    """TensorFlow reads its level once, as it loads: the call must precede every other import."""
    for script in sorted((ROOT / "stages").glob("*.py")):
        body = ast.parse(script.read_text()).body
        statements = [node for node in body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
        first, second = statements[0], statements[1]
        assert isinstance(first, ast.ImportFrom) and first.module == "fcnlab.core.quiet", script.name
        assert ast.unparse(second) == "quiet_tensorflow()", script.name
