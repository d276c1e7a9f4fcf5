"""fcnlab: a DVC pipeline for two fully convolutional networks (a CAE on MNIST, FCN-8s on VGG16)."""

__version__ = "0.1.0"

import contextlib as _contextlib
import importlib.machinery as _machinery
import os as _os
import re as _re
import sys as _sys

# Quiet TensorFlow's C++ start-up banner (must happen before TensorFlow is first imported).
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TF_CPP_MIN_LOG_LEVEL is not enough on its own: TensorFlow's shared libraries log while they
# load, before TensorFlow applies the level, straight to file descriptor 2:
#   WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
#   I0000 00:00:1795635524.468754    7250 port.cc:153] oneDNN custom operations are on. ...
#   I0000 00:00:1795635524.469187    7250 cudart_stub.cc:31] Could not find cuda drivers on ...
# (twice: two of its libraries carry their own copy of the logger), and on a machine without an
# NVIDIA driver its first look for devices adds
#   E0000 00:00:1795635530.891321    7250 cuda_platform.cc:52] failed call to cuInit: ...
# So the first `import tensorflow` (by fcnlab, Keras or anyone, once fcnlab is imported) runs
# with descriptor 2 held in a file; then every line is written back except that header, the
# logger's lines below TF_CPP_MIN_LOG_LEVEL, and, where no NVIDIA driver is installed (no GPU
# can be used anyway), the cuInit failure. Python warnings and tracebacks pass unchanged, and
# if the import raises, every line is written back. TF_CPP_MIN_LOG_LEVEL=0 turns all this off:
# the way to see everything, including TensorFlow's last words if it aborts while loading.

_LOG_LINE = _re.compile(r"([IWEF])\d{4} [\d:.]+ +\d+ \S+:\d+\] ")   # absl's format
_ABSL_HEADER = "WARNING: All log messages before absl::InitializeLog() is called"


class _FilterTensorFlowStartup:
    """A sys.meta_path finder that finds nothing itself: it wraps the first `import tensorflow`."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        _sys.meta_path.remove(self)
        if _min_log_level() == 0:
            return None                     # the user asked for every line: import as usual
        spec = _machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader:
    """TensorFlow's own loader, run with its start-up lines filtered (see above)."""

    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        no_driver = not _nvidia_driver_installed()
        with _stderr_lines_filtered(lambda line: _keep_line(line, no_driver)):
            self.loader.exec_module(module)
            if no_driver:                   # the cuInit probe happens on the first device query
                with _contextlib.suppress(Exception):   # a failing query fails again, unfiltered, later
                    module.config.list_physical_devices()
        module.__loader__ = module.__spec__.loader = self.loader


def _keep_line(line: str, no_driver: bool) -> bool:
    if line.startswith(_ABSL_HEADER):
        return False
    match = _LOG_LINE.match(line)
    if match is None:                       # not TensorFlow's logger: Python's own output
        return True
    if "IWEF".index(match[1]) < _min_log_level():
        return False
    return not (no_driver and "] failed call to cuInit: " in line)


def _min_log_level() -> int:
    try:
        return int(_os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:
        return 0


def _nvidia_driver_installed() -> bool:
    """Whether the NVIDIA driver library (libcuda) loads: without it no GPU is usable."""
    if not _sys.platform.startswith("linux"):
        return True                         # nothing to filter where TensorFlow has no CUDA
    import ctypes

    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@_contextlib.contextmanager
def _stderr_lines_filtered(keep):
    """Send file descriptor 2 to a temporary file in the block; then write back the lines
    `keep` accepts (all of them, in order, when the block raises)."""
    import tempfile

    if _sys.stderr is not None:
        _sys.stderr.flush()
    try:
        saved_fd = _os.dup(2)
    except OSError:                         # no stderr at all: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as held:
        _os.dup2(held.fileno(), 2)
        failed = True
        try:
            yield
            failed = False
        finally:
            if _sys.stderr is not None:
                _sys.stderr.flush()
            _os.dup2(saved_fd, 2)
            _os.close(saved_fd)
            held.seek(0)
            lines = held.read().decode(errors="replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if failed or keep(line))
            if kept and _sys.stderr is not None:
                _sys.stderr.write(kept)
                _sys.stderr.flush()


if "tensorflow" not in _sys.modules:
    _sys.meta_path.insert(0, _FilterTensorFlowStartup())
