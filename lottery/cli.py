"""Command line: ``python -m lottery {train,presets,slim,embed,table,inr}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors import SafetensorError

from artifacts.run_format import RunFormatError, system_fault_message
from lottery.config import add_overrides_argument

DEFAULT_RUNS = Path("runs")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m lottery", description="Draw lottery tickets into run folders."
    )
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train (or resume) a preset into a run folder")
    t.add_argument("--preset", required=True, help="preset name (see `python -m lottery presets`)")
    t.add_argument("--out", type=Path, help="run folder (default: runs/<preset>-<hash>)")
    add_overrides_argument(t, "prune.levels=20 --set model.hidden=300,100")
    t.add_argument("--seed", type=int, help="override the preset's seed (same as --set seed=N)")
    t.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    t.add_argument("--data-dir", help="folder holding the dataset files (e.g. Fashion-MNIST IDX .gz)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    sub.add_parser("presets", help="list the presets, one line each")

    s = sub.add_parser("slim", help="drop trained weights from a finished run (to embed it)")
    s.add_argument("run", type=Path)
    s.add_argument("--keep", default="", help="comma-separated method:level pairs whose weights stay")

    e = sub.add_parser("embed", help="train or resume embedded default runs in artifacts/, then shrink")
    e.add_argument("names", nargs="+", help="embedded run names (see lottery/embedded.py)")
    e.add_argument("--root", type=Path, default=Path("artifacts"), help="folder of the embedded runs")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.add_argument(
        "--shrink-only", action="store_true", help="only shrink what is trained (run groups: after the sweep)"
    )

    tb = sub.add_parser("table", help="print the paper's Table 1 for a run (markdown)")
    tb.add_argument("run", type=Path)
    tb.add_argument(
        "--sparsity", type=float, nargs="+", default=[25, 50, 75, 90], help="target sparsities (%%)"
    )

    from lottery.sweep import add_sweep_command

    add_sweep_command(sub)
    from lottery.inr.cli import add_inr_command

    add_inr_command(sub)
    from lottery.speech.cli import add_data_command, add_speech_command

    add_data_command(sub)
    add_speech_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point; bad arguments and missing data give one ``error:`` line and exit code 2."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "presets":
            from lottery.presets import PRESETS

            width = max(len(n) for n in PRESETS)
            for name, (summary, _) in sorted(PRESETS.items()):
                print(f"{name:<{width}}  {summary}")
            return 0
        if args.command == "train":
            return _train(args)
        if args.command == "embed":
            from lottery.embedded import make_embedded, shrink_embedded

            for name in args.names:
                if args.shrink_only:
                    r = shrink_embedded(name, args.root)
                    print(
                        f"{name}: {r['runs']} run(s), {r['bytes'] / 1e6:.1f} MB in {r['path']} "
                        f"({r['removed']} weight files removed, {r['halved']} halved, "
                        f"{r['mask_files_removed']} per-level mask files folded into mask_levels)"
                    )
                    continue
                r = make_embedded(name, args.root, show_progress=not args.quiet)
                print(
                    f"{name}: {r['seconds']:.0f} s wall, {r['bytes'] / 1e6:.1f} MB in {r['path']} "
                    f"({r['removed']} weight files removed, {r['halved']} halved)"
                )
            return 0
        if args.command == "table":
            from analysis.table import paper_markdown  # the table lives in analysis/ (thin command)

            print(paper_markdown(args.run, args.sparsity))
            return 0
        if args.command in ("inr", "data", "speech", "sweep"):
            return args.func(args)
        if args.command == "slim":
            from lottery.slim import slim_run

            removed = slim_run(args.run, args.keep)
            print(f"removed {removed} weight files from {args.run}")
            return 0
    except (ValueError, FileNotFoundError, RunFormatError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (OSError, SafetensorError) as e:  # disk full, read-only target, a file in the way: one line
        where = getattr(e, "filename", None) or getattr(args, "out", None) or "the run folder"
        print(f"error: {system_fault_message(e, where)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume from the last complete level", file=sys.stderr)
        return 130
    return 1


def _train(args: argparse.Namespace) -> int:
    from lottery.config import apply_overrides
    from lottery.pipeline import train_run
    from lottery.presets import get_preset

    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    desc = apply_overrides(get_preset(args.preset), overrides)
    out = args.out or DEFAULT_RUNS / f"{args.preset}-{desc.hash()}"
    run_dir = train_run(
        desc, out, device=args.device, data_dir=args.data_dir, name=args.preset, show_progress=not args.quiet
    )
    print(f"run written to {run_dir}")
    return 0
