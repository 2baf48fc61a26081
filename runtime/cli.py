"""The `detrt` command line: one entry point, one subcommand per task, registered by `COMMAND_MODULES`."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

from detrt.detectors import DetrtError
from detrt.plugins import LibraryNotFoundError

from . import detector_commands, precision_commands, runtime_commands
from .triton import commands as triton_commands

# What the user can fix: printed as one line, exit 2.
USER_ERRORS = (DetrtError, OSError, LibraryNotFoundError)

# The one registry of commands: each module adds its subcommands (and their choices, from the
# constants of the layer that owns them) with `register(sub)`.
COMMAND_MODULES = (detector_commands, runtime_commands, precision_commands, triton_commands)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="detrt", description="Export, calibrate and run DETR-family detectors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


_TERMINATED = 128 + signal.SIGTERM
_terminated = False  # set by SIGTERM: the exit code is then _TERMINATED, whatever error the stop surfaced as


def _exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so `finally` blocks and context managers remove temporary files. Where it
    lands inside a library (ONNX Runtime reports "initialization failed"), the flag keeps the exit code."""
    def stop(signum: int, _: object) -> None:
        global _terminated
        _terminated = True
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code. A `DetrtError` (or a file the system refuses, or a missing
    native library) prints one line and exits 2; Ctrl-C exits 130, SIGTERM 143; any other exception is a bug
    and keeps its traceback."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # argparse: --help (0) or a bad argument, already printed (2)
        return int(stop.code or 0)
    handler: Callable[[argparse.Namespace], dict] = args.handler
    if argv is None:  # the `detrt` process itself, not a caller's in-process use
        _exit_on_sigterm()
    try:
        result = handler(args)
    except Exception as error:
        if _terminated:  # SIGTERM, surfaced inside a library as its own error (e.g. ONNX Runtime's ImportError)
            return _TERMINATED
        if not isinstance(error, USER_ERRORS):
            raise  # a bug: its traceback
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"detrt {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detrt {args.command}: stopped by the user", file=sys.stderr)
        return 130
    if _terminated:
        return _TERMINATED
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
