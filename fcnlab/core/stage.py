"""What every stage script shares: argument parsing of paths, and one-line errors.

    def main(args): ...
    if __name__ == "__main__":
        run_stage(main, __doc__, inputs=["data"], outputs=["model", "metrics"])

A `FcnlabError` (bad params, bad data, no network) is printed as `error: <message>` on one
line and the script exits with status 2; DVC then reports the stage as failed, and because
every output is written atomically nothing half-written is left for it to cache.
"""

from __future__ import annotations

import argparse
import sys

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import remove_path


def run_stage(main, description: str, inputs: list[str], outputs: list[str]) -> None:
    """Parse `--params` plus one required `--<name>` path argument per input and output, then
    call `main(args)`.

    If `main` fails after writing some outputs (training that diverges half-way, say), they are
    removed, so a failed run leaves none behind.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    for name in inputs:
        parser.add_argument(f"--{name}", required=True, help="input path")
    for name in outputs:
        parser.add_argument(f"--{name}", required=True, help="output path")
    args = parser.parse_args()
    try:
        main(args)
    except BaseException as err:
        for name in outputs:
            remove_path(getattr(args, name))
        if isinstance(err, FcnlabError):
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)
        raise

