"""Peak memory of the Overview/Collapse/Similarity computations with many tickets, bounded vs not.

    python benchmarks/bench_many_tickets.py [--k 1000] [--k-large 10000]

A synthetic imported-style run (two small layers, three levels) is written to a
temporary folder with K tickets. The work behind the Overview and Collapse pages
(:func:`analysis.collapse.collapse_curves`, :func:`analysis.overview.results_table`)
and the Similarity page (:func:`analysis.similarity.similarity_table`) is run twice
in this process: bounded (pairwise work on a seeded sample of
``RTL_MAX_PAIR_TICKETS`` = 256 tickets, the default) and as before the bound (limit
raised past K). Peak memory is measured with ``tracemalloc`` (numpy reports its
buffers to it). The large K is run bounded only: unbounded it would need about
K^2 x 8 bytes per matrix and K^2/2 rows per level and layer.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from analysis.pair_limits import PAIR_ENV  # noqa: E402
from artifacts import run_format as rf  # noqa: E402

SHAPES = {"fc1.weight": (16, 20), "fc2.weight": (4, 16)}


def write_run(run_dir: Path, k: int, levels: int = 3, seed: int = 0) -> Path:
    """K tickets, random nested-free masks, empty predictions (as an import writes)."""
    from ingest.run_writer import empty_predictions

    rng = np.random.default_rng(seed)
    rf.write_manifest(
        run_dir,
        {
            "name": run_dir.name,
            "prunable": {n: list(s) for n, s in SHAPES.items()},
            "groups": [],
            "methods": {"imported": {"tickets": [f"t{i}" for i in range(k)], "ticket_kind": "imported"}},
        },
    )
    for lv in range(levels):
        masks = {n: rng.random((k, *s)) > 0.2 * lv for n, s in SHAPES.items()}
        kept = sum(int(m.sum()) for m in masks.values())
        total = k * sum(int(np.prod(s)) for s in SHAPES.values())
        rf.write_level(
            run_dir,
            "imported",
            lv,
            masks=masks,
            predictions=empty_predictions(),
            info={"sparsity": 1 - kept / total, "params_total": kept},
        )
    return run_dir


def measure(run_dir: Path, limit: int) -> tuple[float, float]:
    """(peak MB, seconds) of the pages' computations with the pairwise limit ``limit``."""
    from analysis.collapse import collapse_curves
    from analysis.overview import results_table
    from analysis.similarity import similarity_table

    os.environ[PAIR_ENV] = str(limit)
    run = rf.load_run(run_dir)
    tracemalloc.start()
    t0 = time.perf_counter()
    curves = collapse_curves(run)
    results_table(run, curves=curves)
    similarity_table(run, "imported", layers=True)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, default=1000, help="tickets for the side-by-side comparison")
    p.add_argument("--k-large", type=int, default=10_000, help="tickets for the bounded-only run")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = write_run(Path(tmp) / "side", args.k)
        bounded = measure(run, 256)
        before = measure(run, 10**9)
        print(f"K = {args.k:,} tickets")
        print(f"  unbounded (all pairs) : peak {before[0]:8.1f} MB  {before[1]:6.1f} s")
        print(f"  bounded (256 sampled) : peak {bounded[0]:8.1f} MB  {bounded[1]:6.1f} s")
        print(f"  memory ratio          : {before[0] / bounded[0]:.1f}x less")
        large = write_run(Path(tmp) / "large", args.k_large)
        peak, secs = measure(large, 256)
        pairs = args.k_large * (args.k_large - 1) // 2
        print(f"K = {args.k_large:,} tickets, bounded: peak {peak:.1f} MB  {secs:.1f} s")
        print(
            f"  unbounded would hold {pairs:,} pairs per level and layer and "
            f"{args.k_large**2 * 8 / 2**20:,.0f} MB per K x K matrix (not run)"
        )


if __name__ == "__main__":
    main()
