"""The `detrt` command line: one entry point, one subcommand per task."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from . import commands


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="detrt", description="Export, calibrate and run DETR-family detectors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = sub.add_parser("version", help="print the versions of detrt and its main dependencies")
    version.set_defaults(handler=commands.version)

    inspect = sub.add_parser("inspect", help="describe a checkpoint: architecture, configuration, parameters")
    inspect.add_argument("checkpoint", help="a checkpoint of DETR, Conditional DETR or Deformable DETR (.pth)")
    inspect.add_argument("--arch", choices=["detr", "conditional_detr", "deformable_detr"], help="skip detection")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=commands.inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors print one line, exit 2)."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], dict] = args.handler
    try:
        result = handler(args)
    except (OSError, ValueError) as error:
        print(f"detrt {args.command}: error: {error}", file=sys.stderr)
        return 2
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
