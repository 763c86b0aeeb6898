"""``python -m ingest``: convert other tools' checkpoints into run folders.

``python -m ingest import PATH... --out RUN_DIR``. Refusals
(:class:`CheckpointError`, :class:`RunFormatError`) print one ``error: ...``
line and exit with code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from artifacts.run_format import RunFormatError
from ingest.command import add_import_command
from ingest.errors import CheckpointError

EXIT_REFUSED = 2  # same code argparse uses for bad usage


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m ingest`` parser."""
    parser = argparse.ArgumentParser(
        prog="python -m ingest", description="Convert pruning checkpoints into run folders."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_import_command(subparsers)
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
    except (CheckpointError, RunFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except OSError as e:  # disk full, permissions: not the input's fault, still no traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
