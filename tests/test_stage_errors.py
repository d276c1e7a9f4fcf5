"""However a stage fails, it prints one `error:` line, nothing after it, and leaves no outputs.

Each test runs a real stage script in a subprocess (as DVC does). prepare-mnist-subset starts in
about two seconds (it never loads TensorFlow), so it stands in for every stage: they all end
through `fcnlab.core.stage.run_stage`.
"""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, default_sigint, run_script

pytestmark = pytest.mark.integration


def prepare_mnist(tmp_path, summary, env_extra=None, params=ROOT / "params.yaml"):
    return run_script("prepare_mnist_subset.py", "--params", str(params), "--out", str(tmp_path / "prepared"),
                      "--summary", str(summary), cwd=tmp_path, env_extra=env_extra)


@pytest.fixture
def summary_under_a_file(tmp_path):
    """A --summary path whose parent is a file: writing it fails with an OSError fcnlab does not
    foresee, after the stage has written its other output (--out)."""
    (tmp_path / "a_file").write_text("not a folder\n")
    return tmp_path / "a_file" / "summary.json"


def test_an_unexpected_error_is_one_line_naming_the_stage_the_type_and_the_switch(tmp_path, summary_under_a_file):
    result = prepare_mnist(tmp_path, summary_under_a_file)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: prepare-mnist-subset failed unexpectedly: FileExistsError: ")
    assert "a_file" in lines[0] and "FCNLAB_DEBUG=1" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_failed_stage_leaves_none_of_its_outputs(tmp_path, summary_under_a_file):
    result = prepare_mnist(tmp_path, summary_under_a_file)
    assert result.returncode == 1
    assert not (tmp_path / "prepared").exists()          # written before the failure, then removed
    assert (tmp_path / "a_file").read_text() == "not a folder\n"


def test_fcnlab_debug_shows_the_traceback_above_the_error_line(tmp_path, summary_under_a_file):
    result = prepare_mnist(tmp_path, summary_under_a_file, env_extra={"FCNLAB_DEBUG": "1"})
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback (most recent call last):")
    assert "save_json" in result.stderr                   # the frame that failed
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: prepare-mnist-subset failed unexpectedly: FileExistsError: ")


def test_a_user_fixable_error_still_exits_2_with_its_message(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("test_fraction: 0.2 ", "test_fraction: 1.5 ", 1))
    result = prepare_mnist(tmp_path, tmp_path / "summary.json", params=params)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: params.yaml: mnist.test_fraction must be a number in (0.0, 0.9], got 1.5; fix it in params.yaml"]


def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    """The stage is stopped while it waits to read its MNIST file (a named pipe nobody writes)."""
    fifo = tmp_path / "mnist.npz"
    os.mkfifo(fifo)
    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text().replace("source: embedded ", f"source: {fifo} ", 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen([sys.executable, str(ROOT / "stages" / "prepare_mnist_subset.py"),
                                "--params", str(params), "--out", str(tmp_path / "prepared"),
                                "--summary", str(tmp_path / "summary.json")],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_sigint)
    writer = None
    try:
        deadline = time.monotonic() + 120
        while writer is None:                             # the stage has opened the pipe: it is in main
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                assert err.errno == errno.ENXIO           # no reader yet
                time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
        if writer is not None:
            os.close(writer)
    assert process.returncode == 130
    assert stderr.splitlines() == ["error: prepare-mnist-subset: interrupted; its outputs were removed"]
    assert not (tmp_path / "prepared").exists()
