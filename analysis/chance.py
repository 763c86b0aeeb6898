"""The chance level of mask similarity, per level, as a band over ticket pairs.

Two independent random masks with the tickets' per-layer densities have an
expected Jaccard ``E[J]`` (:func:`analysis.similarity.chance_jaccard_from_counts`);
it differs between pairs only through their densities. This module summarises
it per level, for all pairs or for the pairs of one ticket, so a figure can
draw "what chance alone would give" next to the observed similarity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.similarity import GLOBAL

__all__ = ["BAND_COLUMNS", "chance_band"]

BAND_COLUMNS = ["level", "sparsity", "low", "mean", "high", "n_pairs"]


def chance_band(table: pd.DataFrame, ticket: str | None = None, layer: str = GLOBAL) -> pd.DataFrame:
    """Range and mean of the pairs' chance Jaccard ``E[J]`` at each level.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`analysis.similarity.similarity_table` (columns
        ``level, sparsity, ticket_a, ticket_b, layer, jaccard_chance``).
    ticket : str, optional
        Only the pairs this ticket is part of (default: all pairs).
    layer : str
        Layer name or ``"__global__"``.

    Returns
    -------
    DataFrame
        Columns ``level`` (int), ``sparsity``, ``low``, ``mean``, ``high``
        (min, mean and max of ``E[J]`` over the pairs), ``n_pairs`` (int); one
        row per level, ascending. Empty when no pair matches.
    """
    rows = table[table["layer"] == layer]
    if ticket is not None:
        t = str(ticket)
        rows = rows[(rows["ticket_a"] == t) | (rows["ticket_b"] == t)]
    if rows.empty:
        return pd.DataFrame({c: pd.Series(dtype=np.float64) for c in BAND_COLUMNS})
    out = (
        rows.groupby(["level", "sparsity"], sort=True)["jaccard_chance"]
        .agg(low="min", mean="mean", high="max", n_pairs="size")
        .reset_index()
    )
    out["level"] = out["level"].astype(np.int64)
    out["n_pairs"] = out["n_pairs"].astype(np.int64)
    return out[BAND_COLUMNS]
