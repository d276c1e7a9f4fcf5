"""Quiet TensorFlow's logging, called once where a stage script or the `fcnlab` command starts.

TensorFlow reads `TF_CPP_MIN_LOG_LEVEL` once, while it loads, so `quiet_tensorflow()` must run
before anything imports TensorFlow (or Keras): it is the first statement of every stage script,
and each `fcnlab` command calls it before importing the modules that do the work. Importing this
module, or any of fcnlab, changes nothing.

What it hides, unless the user set `TF_CPP_MIN_LOG_LEVEL` themselves (0 shows everything):
- TensorFlow's C++ log below level 3, e.g. the CPU-instructions note, `failed call to cuInit`
  on a machine without an NVIDIA driver, and `oneDNN supports DT_UINT8 only on platforms with
  AVX-512` on CPUs where oneDNN is on without AVX-512. Errors that stop a run still reach the user
  as Python exceptions, whose messages carry them.
- TensorFlow's Python logger below ERROR (e.g. "retracing" notes when image sizes vary).

What it cannot hide: the few lines TensorFlow's shared libraries print while the dynamic loader
runs their initialisers, before any setting is read ("WARNING: All log messages before
absl::InitializeLog() is called ...", "oneDNN custom operations are on ...", "Could not find cuda
drivers ..."). They appear even with TF_CPP_MIN_LOG_LEVEL=3; only redirecting file descriptor 2
would drop them, and fcnlab leaves the process's streams alone.
"""

from __future__ import annotations

import logging
import os

DEFAULT_TF_LOG_LEVEL = "3"   # TensorFlow's C++ log: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR


def quiet_tensorflow() -> None:
    """Set TensorFlow's log levels, keeping any `TF_CPP_MIN_LOG_LEVEL` the user chose."""
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", DEFAULT_TF_LOG_LEVEL)
    if level.strip() in ("2", "3"):        # the user's 0 or 1 asks for TensorFlow's notes too
        logging.getLogger("tensorflow").setLevel(logging.ERROR)
