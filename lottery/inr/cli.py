"""``python -m lottery inr``: train (or resume) region tickets of an implicit neural representation."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lottery.config import add_overrides_argument, apply_overrides
from lottery.inr.config import METHODS, INRDescription

DEFAULT_RUNS = Path("runs")


def add_inr_command(sub: argparse._SubParsersAction) -> None:
    """Register the ``inr`` subcommand (options default to :class:`INRDescription`'s fields)."""
    d = INRDescription()
    p = sub.add_parser(
        "inr",
        help="region tickets (rtl) and IMP single (imp) of an INR of scikit-learn's sample photographs",
        description="Train or resume an INR run: rtl (one ticket per image region) and imp "
        "(one ticket conditioned on a region embedding), from one theta_0, through the same levels.",
    )
    p.add_argument("--out", type=Path, help="run folder (default: runs/image-inr-<hash>)")
    p.add_argument("--images", default=",".join(d.images), help="comma-separated: china, flower")
    p.add_argument("--size", type=int, default=d.size, help="side of the downsampled images, pixels")
    p.add_argument("--regions", type=int, default=d.regions, help="k-means regions per image")
    p.add_argument("--levels", type=int, default=d.levels, help="pruning levels after the dense one")
    p.add_argument("--fraction", type=float, default=d.fraction, help="fraction pruned per level")
    p.add_argument("--rounds", type=int, default=d.rounds, help="steps per ticket of each training phase")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="pixels per step")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument(
        "--frequencies", type=int, default=d.n_frequencies, help="Fourier frequencies F (2F inputs)"
    )
    p.add_argument("--sigma", type=float, default=d.sigma, help="std of the Gaussian Fourier frequencies")
    p.add_argument("--methods", default=",".join(d.methods), help=f"comma-separated subset of {METHODS}")
    p.add_argument("--seed", type=int, default=d.seed)
    add_overrides_argument(p, "depth=4 --set position_weight=2")
    p.add_argument("--no-weights", action="store_true", help="keep no trained weights (for embedded runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_inr_command)


def _names(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def run_inr_command(args: argparse.Namespace) -> int:
    """Handler of ``python -m lottery inr``; prints the run folder and the wall time."""
    from lottery.inr.run import train_inr_run

    desc = INRDescription(
        images=_names(args.images),
        size=args.size,
        regions=args.regions,
        n_frequencies=args.frequencies,
        sigma=args.sigma,
        rounds=args.rounds,
        batch_size=args.batch_size,
        lr=args.lr,
        fraction=args.fraction,
        levels=args.levels,
        methods=_names(args.methods),
        seed=args.seed,
    )
    desc = apply_overrides(desc, args.overrides)
    out = args.out or DEFAULT_RUNS / f"image-inr-{desc.hash()}"
    t0 = time.perf_counter()
    run_dir = train_inr_run(
        desc, out, name=out.name, keep_weights=not args.no_weights, show_progress=not args.quiet
    )
    print(f"run written to {run_dir} in {time.perf_counter() - t0:.0f} s")
    return 0
