"""The level nearest a sparsity: written once, used by every table and page.

Methods are pruned on their own schedules (an expert ticket and a single
ticket reach 50 % sparsity at different levels), so comparing methods "at one
sparsity" means taking, for each method, its completed level whose sparsity is
nearest the target. Ties go to the denser (lower) level.

Every function accepts either a :class:`~artifacts.run_format.Run` or a level
table with columns ``method, level, sparsity`` (e.g.
:func:`analysis.overview.level_table`), so the app can answer from its cached
table without reopening the run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "PAPER_SPARSITIES",
    "dense_reference",
    "level_sparsities",
    "levels_at",
    "nearest_level",
    "paper_levels",
    "reference_only_methods",
]

# The sparsities at which the paper reports its tables (Table 1), as fractions.
PAPER_SPARSITIES = (0.25, 0.5, 0.75)


def level_sparsities(source: Run | pd.DataFrame, method: str) -> pd.Series:
    """Sparsity of every completed level of ``method``.

    Parameters
    ----------
    source : Run or DataFrame
        A run, or a level table with columns ``method, level, sparsity``.
    method : str

    Returns
    -------
    Series of float
        Indexed by level (int, ascending); empty when the method has no level.
    """
    if isinstance(source, pd.DataFrame):
        rows = source[source["method"] == method]
        s = pd.Series(
            rows["sparsity"].to_numpy(dtype=np.float64), index=rows["level"].to_numpy(dtype=np.int64)
        )
        return s.sort_index()
    levels = source.levels(method)
    return pd.Series(
        [float(source.sparsity(method, lv)) for lv in levels], index=np.asarray(levels, dtype=np.int64)
    )


def nearest_level(source: Run | pd.DataFrame, method: str, sparsity: float) -> int:
    """The completed level of ``method`` whose sparsity is nearest ``sparsity``.

    Parameters
    ----------
    source : Run or DataFrame
        A run, or a level table with columns ``method, level, sparsity``.
    method : str
    sparsity : float
        Target fraction of prunable weights removed, 0..1.

    Returns
    -------
    int
        Ties go to the denser (lower) level.

    Raises
    ------
    ValueError
        When ``method`` has no completed level.
    """
    s = level_sparsities(source, method)
    if s.empty:
        raise ValueError(f"method {method!r} has no completed level")
    # argmin returns the first minimum and levels are ascending: ties go to the lower level
    return int(s.index[int(np.argmin(np.abs(s.to_numpy() - float(sparsity))))])


def levels_at(
    source: Run | pd.DataFrame, sparsity: float, methods: Sequence[str] | None = None
) -> dict[str, int]:
    """``{method: level}``: each method's level nearest one target sparsity.

    Parameters
    ----------
    source : Run or DataFrame
        A run, or a level table with columns ``method, level, sparsity``.
    sparsity : float
        Target fraction, 0..1.
    methods : sequence of str, optional
        Default: every method of the run (or of the table, in order of appearance).

    Returns
    -------
    dict of str to int
        Methods without a completed level are left out.
    """
    if methods is None:
        methods = (
            list(dict.fromkeys(source["method"]))
            if isinstance(source, pd.DataFrame)
            else list(source.methods)
        )
    out = {}
    for m in methods:
        if not level_sparsities(source, m).empty:
            out[m] = nearest_level(source, m, sparsity)
    return out


def paper_levels(
    source: Run | pd.DataFrame, methods: Sequence[str], targets: Sequence[float] = PAPER_SPARSITIES
) -> list[int]:
    """Distinct levels nearest the paper's reporting sparsities, over several methods.

    Parameters
    ----------
    source : Run or DataFrame
    methods : sequence of str
    targets : sequence of float
        Target sparsities, 0..1.

    Returns
    -------
    list of int
        Ascending: for each method and target, :func:`nearest_level`. Empty
        when no method has a level.
    """
    return sorted({lv for t in targets for lv in levels_at(source, t, methods).values()})


def dense_reference(run: Run, method: str | None = None) -> tuple[str, int] | None:
    """The run's dense reference ``(method, level)``: what every "compared with dense" reads.

    Runs of the protocol (:mod:`lottery.protocol`) name it in
    ``manifest["dense_reference"]``: IMP level 0, or the one-level ``dense``
    method, the dense model trained on all the data (RTL's own level 0 is
    jointly retrained and is not it). Older runs have no such field: then each
    method is its own reference at its first level (0, the unpruned model).

    Parameters
    ----------
    run : Run
    method : str, optional
        The method being compared, for the fallback.

    Returns
    -------
    tuple of (str, int) or None
        The manifest's reference when the run holds that level; else
        ``(method, first level of method)``; None without either.
    """
    ref = run.manifest.get("dense_reference")
    if isinstance(ref, Mapping):
        m, lv = ref.get("method"), ref.get("level", 0)
        if isinstance(m, str) and isinstance(lv, int) and m in run.methods and lv in run.levels(m):
            return m, int(lv)
    if method is None or method not in run.methods:
        return None
    levels = run.levels(method)
    return (method, 0 if 0 in levels else int(levels[0])) if levels else None


def reference_only_methods(run: Run) -> list[str]:
    """Methods that are a one-level dense reference point, not a pruning sweep.

    The protocol's ``dense`` method (IMP's level 0 alone, run beside ticket
    methods when a run has no ``imp``) and any one-level method the manifest
    names as ``dense_reference``.

    Parameters
    ----------
    run : Run

    Returns
    -------
    list of str
        In run order; empty for runs without one.
    """
    ref = dense_reference(run)
    named = ref[0] if ref is not None else None
    return [m for m in run.methods if (m == "dense" or m == named) and len(run.levels(m)) <= 1]
