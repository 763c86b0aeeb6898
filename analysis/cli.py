"""``python -m analysis``: the command line.

Each subcommand is registered by one small function taking the subparsers
object; a new subcommand is
one more entry in :data:`SUBCOMMANDS`. Handlers set ``func`` on their parser and
return an exit code. Refusals (:class:`RunFormatError`)
print one ``error: ...`` line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from analysis.collapse import add_collapse_command
from analysis.reconstruction import add_reconstruction_command
from analysis.report import add_report_command
from analysis.signals import add_signals_command
from analysis.table import add_table_command
from artifacts.run_format import RunFormatError

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_report_command,
    add_reconstruction_command,
    add_signals_command,
    add_table_command,
    add_collapse_command,
]

EXIT_REFUSED = 2  # same code argparse uses for bad usage


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m analysis`` parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Routing the Lottery dashboard tools.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, run the subcommand, and turn refusals into ``error:`` lines.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for a refused input (or bad usage), 1 for an OS error,
        130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except RunFormatError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:  # disk full, permissions: not the input's fault, still no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
