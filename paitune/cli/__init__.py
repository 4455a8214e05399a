"""The ``paitune`` command: prune, proxies, spaces, sweep, analyze, compact.

Every subcommand validates its input before starting anything; bad input (a ``PaituneError``)
becomes one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__
from ..errors import PaituneError
from ..plugins import load_plugins

SUBCOMMAND_MODULES = ("pai", "spaces", "sweep", "analyze", "compact")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit status 2 like every other bad input."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="paitune", description="Distributed search over pruning-at-initialization methods.")
    parser.add_argument("--version", action="version", version=f"paitune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        load_plugins()  # before parsing: --help lists the names the plug-ins register
    except PaituneError as err:
        print(f"paitune: error: {err}", file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PaituneError as err:
        print(f"paitune {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"paitune {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
