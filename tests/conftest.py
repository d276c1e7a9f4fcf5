"""Shared test helpers: the project root, and running a stage script as DVC would."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Browser tests drive Debian's Chromium (never a downloaded browser) with these flags; without
# the networking ones Chromium keeps trying to reach Google's hosts from this offline machine.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def playwright_sync_api():
    """Playwright's sync API for a test in Chromium. In CI (.ci/run installs both) a missing
    browser or package fails the test; elsewhere the test is skipped, saying what to install."""
    if os.environ.get("CI"):
        import playwright.sync_api as sync_api
        assert CHROMIUM.is_file(), f"{CHROMIUM} not found; .ci/run must apt-get install chromium"
        return sync_api
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' installs playwright")
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found; install Debian's chromium package (apt-get install -y chromium)")
    return sync_api


def run_script(script: str, *args: str, cwd=ROOT, env_extra=None, timeout=600):
    """Run `python stages/<script> args...` in a subprocess; return the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def default_sigint() -> None:
    """Give the child the default SIGINT action: a shell without job control (`pytest &`) starts
    its background jobs with SIGINT ignored, and the child would inherit that and never see Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def offline_env(tmp_path):
    """Environment in which every download goes to a closed port on 127.0.0.1 and fails at once.

    The real download code runs (and fails the way it does for a user without internet), but
    no packet leaves this machine and no cached copy in ~/.keras is found.
    """
    dead = "http://127.0.0.1:9"
    return {"HTTP_PROXY": dead, "HTTPS_PROXY": dead, "http_proxy": dead, "https_proxy": dead,
            "NO_PROXY": "", "no_proxy": "", "KERAS_HOME": str(tmp_path / "keras_home")}


# The files that take longest, longest first (measured with `pytest --durations=0`).
LONGEST_FILES = ["test_pipeline.py", "test_bad_inputs.py", "test_team_remote.py",
                 "test_geometry_end_to_end.py", "test_distributed.py"]


def pytest_collection_modifyitems(items):
    """The longest files first: xdist hands each worker a whole file at a time, so the short
    files fill the gaps at the end instead of one worker finishing a long file alone."""
    rank = {name: index for index, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A seeded narrow FCN-8s and a seeded CAE encoder/decoder, saved as .keras files."""
    import keras

    from fcnlab.cae.model import cae_decoder, cae_encoder
    from fcnlab.core.io import save_model
    from fcnlab.seg.model import fcn8s_vgg16

    folder = tmp_path_factory.mktemp("models")
    keras.utils.set_random_seed(0)
    save_model(fcn8s_vgg16(head_width=8), folder / "fcn.keras")
    save_model(cae_encoder(), folder / "encoder.keras")
    save_model(cae_decoder(), folder / "decoder.keras")
    return {name: folder / f"{name}.keras" for name in ("fcn", "encoder", "decoder")}
