"""The ``import`` subcommand of ``python -m analysis``."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ingest.convert import read_tickets
from ingest.errors import CheckpointError
from ingest.hf import hf_folders, import_hf_command
from ingest.run_writer import (
    DEFAULT_METHOD,
    WEIGHT_DTYPES,
    check_destination,
    system_fault_message,
    write_run,
)
from ingest.tickets import ImportedTickets

_EPILOG = """\
formats (detected automatically):
  torch.nn.utils.prune state dicts   <module>.<param>_orig + <module>.<param>_mask (LSTM/GRU/RNN too)
  ShrinkBench checkpoints            <module>.weight + <module>.weight_mask (model_state_dict ok)
  OpenLTH run trees                  lottery_*/replicate_*/level_*/main/mask.pth (+ logger)
  NNI mask files                     {module: {"weight": mask, "bias": mask}} (NNI 3.0 defaultdict ok)
  torch.ao.pruning before squash     {"model": model.state_dict(), "sparsifier": sparsifier.state_dict()}
  training checkpoints               {"state_dict": ..., "best_acc1": ..., "optimizer": ...}
  plain state dicts                  masks inferred as weight != 0 (marked as inferred)
  Hugging Face model folders         model.safetensors(.index.json) + config.json, one ticket per
                                     folder (or a folder of them); streamed, masks only, N:M reported
  a folder of checkpoints, or a file holding {ticket: masks}: one ticket each
  files sharing a name (a/checkpoint-30.pt, b/checkpoint-30.pt): tickets named a, b

files are read with torch.load(weights_only=True) or safetensors only: a pickle
that would run code is refused, never executed.

example:
  python -m ingest import open_lth_data/lottery_1234 --out runs/imported_lth
"""


def add_import_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``import PATH... --out RUN_DIR`` on the ``python -m analysis`` parser."""
    p = subparsers.add_parser(
        "import",
        help="convert pruning checkpoints (torch prune, ShrinkBench, OpenLTH, NNI, ...) into a run",
        description="Convert existing lottery-ticket checkpoints into a run folder the dashboard opens.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="checkpoint files, folders of them, or OpenLTH trees"
    )
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder to create")
    p.add_argument("--name", help="run name (default: the RUN_DIR folder name)")
    p.add_argument("--method", default=DEFAULT_METHOD, help=f"method name (default: {DEFAULT_METHOD})")
    p.add_argument(
        "--weights",
        choices=WEIGHT_DTYPES,
        default="float32",
        help="store the masked weights as float32 (default) or float16, or not at all",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace RUN_DIR if it is a run written by this project (the old run is kept aside until "
        "the new one is in place)",
    )
    p.add_argument(
        "--replace-embedded",
        action="store_true",
        help="with --force, also replace an embedded run under artifacts/",
    )
    p.set_defaults(func=run_import)


def run_import(args: argparse.Namespace) -> int:
    """Run the ``import`` subcommand; refusals propagate as ``CheckpointError``.

    Faults of the system (disk full, read-only folder, a file where a folder
    should be, an unreadable input) become a ``CheckpointError`` too: one line
    naming the path and the cause, exit code 2; nothing is left half-written.
    """
    out = Path(args.out).absolute()
    replace_embedded = getattr(args, "replace_embedded", False)
    try:
        check_destination(out, force=args.force, replace_embedded=replace_embedded)  # before reading
        if all(hf_folders(p) for p in args.paths):  # Hugging Face model folders: streamed, masks only
            return import_hf_command(args, out)
        tickets = read_tickets(args.paths)
        write_run(
            tickets,
            out,
            name=args.name,
            method=args.method,
            force=args.force,
            weights_dtype=args.weights,
            source_paths=args.paths,
            replace_embedded=replace_embedded,
        )
    except OSError as e:
        raise CheckpointError(system_fault_message(e, e.filename or out, "cannot access")) from None
    print(summary(tickets, args.out, weights_kept=args.weights != "none"))
    return 0


def summary(tickets: ImportedTickets, out: str, *, weights_kept: bool = True) -> str:
    """A few lines describing what was imported."""
    levels = list(tickets.levels.values())
    sparsity = [float(lv.ticket_sparsity().mean()) for lv in levels]
    n = sum(int(np.prod(s)) for s in tickets.layers.values())
    lines = [
        f"wrote {out}: {len(tickets.tickets)} ticket(s) from {tickets.format}, {len(levels)} level(s), "
        f"{len(tickets.layers)} layer(s), {n} prunable weights",
        f"  sparsity {sparsity[0]:.1%}" + (f" -> {sparsity[-1]:.1%}" if len(sparsity) > 1 else ""),
    ]
    acc = [lv.metrics().get("test_accuracy") for lv in levels]
    if any(a is not None for a in acc):
        lines.append("  test_accuracy " + ", ".join("-" if a is None else f"{a:.4f}" for a in acc))
    if levels[0].weights is None:
        lines.append("  masks only: the source holds no weights")
    elif not weights_kept:
        lines.append("  masks only: weights not stored (--weights none)")
    if tickets.inferred_masks:
        lines.append("  note: masks were inferred from zero weights (the source stores no masks)")
    return "\n".join(lines)
