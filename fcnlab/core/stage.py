"""What every stage script shares: argument parsing of paths, and one-line errors (the `fcnlab`
commands end an unexpected failure with the same line, `print_unexpected_error`).

    from fcnlab.core.quiet import quiet_tensorflow

    quiet_tensorflow()   # first, before the imports that load TensorFlow

    ...
    def main(args): ...
    if __name__ == "__main__":
        run_stage(main, __doc__, inputs=["data"], outputs=["model", "metrics"])

However `main` fails, the stage prints one line on stderr and nothing after it, and removes the
outputs it may have begun (every output is written atomically, so DVC never caches half a file):
- `FcnlabError` (bad params, bad data, no network): `error: <message>`, exit status 2;
- Ctrl-C: `error: <stage>: interrupted ...`, exit status 130;
- anything else (a bug, or a case fcnlab does not foresee): `error: <stage> failed unexpectedly:
  <type>: <message> ...`, exit status 1. `FCNLAB_DEBUG=1` prints the traceback above that line.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import traceback
from pathlib import Path

from fcnlab.core.errors import FcnlabError
from fcnlab.core.io import remove_path

EXIT_FAILED, EXIT_FCNLAB_ERROR, EXIT_INTERRUPTED = 1, 2, 130   # 130 = 128 + SIGINT, as shells report
DEBUG_SWITCH = "FCNLAB_DEBUG"
SHOWN_MESSAGE_CHARS = 300   # TensorFlow's messages can run to pages; the line keeps their start


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
    except SystemExit:
        raise
    except BaseException as err:
        for name in outputs:
            remove_path(getattr(args, name))
        _exit_with_one_line(err, _stage_name(main))


def _stage_name(main) -> str:
    """`train-fcn` for the `main` of stages/train_fcn.py: the name dvc.yaml gives the stage."""
    return Path(inspect.getsourcefile(main) or sys.argv[0]).stem.replace("_", "-")


def _exit_with_one_line(err: BaseException, stage: str) -> None:
    if isinstance(err, FcnlabError):
        print(f"error: {err}", file=sys.stderr)
        status = EXIT_FCNLAB_ERROR
    elif isinstance(err, KeyboardInterrupt):
        print(f"error: {stage}: interrupted; its outputs were removed", file=sys.stderr)
        status = EXIT_INTERRUPTED
    else:
        print_unexpected_error(err, stage, "its outputs were removed")
        status = EXIT_FAILED
    # Leave at once: the interpreter's teardown would run libraries' finalizers and atexit hooks
    # (dvclive's, Git objects' "Exception ignored in ..." notes) after the line, or write again
    # into the outputs just removed.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


def print_unexpected_error(err: BaseException, who: str, aftermath: str) -> None:
    """One `error:` line on stderr for a failure fcnlab does not foresee (a bug, or a case it
    does not handle): who failed, the exception's type and message, what became of the outputs,
    and the switch that shows the traceback (printed above the line when it is set)."""
    if os.environ.get(DEBUG_SWITCH, "") not in ("", "0"):
        traceback.print_exception(err)
    message = " ".join(str(err).split()) or "(no message)"
    if len(message) > SHOWN_MESSAGE_CHARS:
        message = message[:SHOWN_MESSAGE_CHARS - 3] + "..."
    print(f"error: {who} failed unexpectedly: {type(err).__name__}: {message}; {aftermath}. Rerun it "
          f"with {DEBUG_SWITCH}=1 to see the traceback, and report it if the inputs look right",
          file=sys.stderr)
