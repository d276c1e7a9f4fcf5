"""What every stage script shares: argument parsing of paths, and one-line errors.

    def main(args): ...
    if __name__ == "__main__":
        run_stage(main, __doc__, inputs=["--data"], outputs=["--model"])

A `FcnlabError` (bad params, bad data, no network) is printed as `error: <message>` on one
line and the script exits with status 2; DVC then reports the stage as failed, and because
every output is written atomically nothing half-written is left for it to cache.
"""

from __future__ import annotations

import argparse
import sys

from fcnlab.errors import FcnlabError


def run_stage(main, description: str, paths: list[str]) -> None:
    """Parse `--params` plus one `--<name>` path argument per entry of `paths`, then call `main`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    for name in paths:
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args()
    try:
        main(args)
    except FcnlabError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
