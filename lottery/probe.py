"""A fixed probe batch of test images stored with a run, to recompute attention maps from checkpoints.

``extra/probe.safetensors`` holds ``x`` (B, C, H, W) float32, ``label``,
``subset`` and ``sample`` (B,) int64, ``sample`` being the row of the
evaluation split. The batch takes the first unused evaluation samples of
the subsets in turn (subset 0, 1, ..., K-1, 0, ...), so every subset is
represented about equally; it draws no random numbers.
"""

from __future__ import annotations

import numpy as np

from artifacts import run_format as rf
from lottery.context import Context

PROBE = "probe"


def probe_indices(subset: np.ndarray, size: int, k: int) -> np.ndarray:
    """Rows of a balanced, deterministic probe batch.

    Parameters
    ----------
    subset : ndarray of int, shape (N,)
        Subset of every evaluation sample.
    size : int
        Wanted batch size B (capped at N).
    k : int
        Number of subsets.

    Returns
    -------
    ndarray of int64, shape (min(B, N),)
        Rows in the order taken: round-robin over subsets, each subset's rows
        ascending; a subset that runs out is skipped.
    """
    queues = [list(np.flatnonzero(np.asarray(subset) == s)) for s in range(k)]
    out: list[int] = []
    size = min(size, len(subset))
    while len(out) < size:
        for q in queues:
            if q and len(out) < size:
                out.append(int(q.pop(0)))
    return np.asarray(out, dtype=np.int64)


def write_probe(ctx: Context) -> None:
    """Store the run's probe batch once (``desc.probe_size`` images; nothing if 0)."""
    size = ctx.desc.probe_size
    path = ctx.run_dir / rf.EXTRA_DIR / f"{PROBE}.safetensors"
    if size <= 0 or path.is_file():
        return
    rows = probe_indices(ctx.subset_test.cpu().numpy(), size, ctx.k)
    path.parent.mkdir(parents=True, exist_ok=True)
    rf.save_tensors(
        path,
        {
            "x": ctx.x_test.cpu().numpy()[rows].astype(np.float32),
            "label": ctx.y_test.cpu().numpy()[rows].astype(np.int64),
            "subset": ctx.subset_test.cpu().numpy()[rows].astype(np.int64),
            "sample": rows,
        },
    )
