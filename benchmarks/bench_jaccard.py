"""Benchmark: bit-packed pairwise Jaccard against scipy's pdist("jaccard").

Usage::

    python benchmarks/bench_jaccard.py            # K = 32 masks of N = 10,000,000 weights
    python benchmarks/bench_jaccard.py --n 1000000 --k 16

Targets (issue 4): at least 30x faster than scipy, identical values, and a peak
of extra memory during the call (tracemalloc, which sees numpy's allocations)
below 2x the size of the packed masks (K * N / 8 bytes). The boolean input
itself (K * N bytes) is allocated before measuring and not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy.spatial.distance import pdist, squareform

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.similarity import pairwise_jaccard  # noqa: E402


def make_masks(k: int, n: int, seed: int) -> np.ndarray:
    """K random masks with densities spread over 0.02..0.6, built row by row to save memory."""
    rng = np.random.default_rng(seed)
    masks = np.empty((k, n), dtype=bool)
    for i, d in enumerate(np.linspace(0.02, 0.6, k)):
        masks[i] = rng.random(n, dtype=np.float32) < d
    return masks


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000, help="weights per mask")
    p.add_argument("--k", type=int, default=32, help="number of masks")
    p.add_argument("--repeat", type=int, default=3, help="timing repeats of the packed method")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    masks = make_masks(args.k, args.n, args.seed)
    packed_bytes = args.k * ((args.n + 7) // 8)
    mib = 2**20
    print(f"K = {args.k}, N = {args.n:,}: bool {masks.nbytes / mib:.1f} MiB, ", end="")
    print(f"packed {packed_bytes / mib:.1f} MiB")

    pairwise_jaccard(masks[:, :4096])  # warm-up (imports, first-call costs)
    t_ours, ours = best_of(lambda: pairwise_jaccard(masks), args.repeat)

    tracemalloc.start()
    pairwise_jaccard(masks)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t = time.perf_counter()
    ref = 1.0 - squareform(pdist(masks, "jaccard"))
    t_scipy = time.perf_counter() - t

    identical = bool(np.array_equal(ours, ref))
    speedup = t_scipy / t_ours
    mem_ratio = peak / packed_bytes
    print(f"scipy pdist('jaccard'): {t_scipy:8.3f} s")
    print(f"pairwise_jaccard:       {t_ours:8.3f} s (best of {args.repeat})")
    print(f"speedup:                {speedup:8.1f}x   (target >= 30x)")
    print(f"identical values:       {identical}   (max |diff| {np.abs(ours - ref).max():.3g})")
    print(f"peak extra memory:      {peak / mib:8.2f} MiB = ", end="")
    print(f"{mem_ratio:.3f}x packed masks (target < 2x)")
    ok = identical and speedup >= 30 and mem_ratio < 2
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
