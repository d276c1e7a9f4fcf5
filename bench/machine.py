"""What every benchmark row records about where it ran: the CPU's vector flags and the commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cpu_flags() -> str:
    """The CPU's AVX and AMX flags, as `grep -o 'avx[^ ]*' /proc/cpuinfo | sort -u` lists AVX."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return " ".join(sorted(flag for flag in flags if flag.startswith(("avx", "amx")))) or "none"


def commit() -> str:
    """This checkout's short commit hash ("unknown" outside git)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
