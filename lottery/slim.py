"""Drop trained weights from a finished run, keeping masks and predictions (for embedding)."""

from __future__ import annotations

from pathlib import Path

from artifacts import run_format as rf


def slim_run(run_dir: str | Path, keep: str = "") -> int:
    """Remove ``weights.safetensors`` from every level except the ``method:level`` pairs in ``keep``.

    Returns
    -------
    int
        Number of weight files removed.
    """
    run = rf.load_run(run_dir)
    kept = set()
    for item in filter(None, (s.strip() for s in keep.split(","))):
        method, _, level = item.partition(":")
        if not level.lstrip("-").isdigit():
            raise ValueError(f"--keep takes method:level pairs, got {item!r}")
        lv = int(level)
        kept.add((method, run.levels(method)[-1] if lv == -1 else lv))
    removed = 0
    for method in run.methods:
        for level in run.levels(method):
            path = rf.level_dir(run.path, method, level) / rf.WEIGHTS
            if (method, level) not in kept and path.is_file():
                path.unlink()
                removed += 1
    return removed
