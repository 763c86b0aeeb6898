"""Attention entropy of a run's transformer tickets over levels: probe, tabulate, summarise.

Glue between the probe (:mod:`analysis.attention_probe`, torch) and the
entropy tables (:mod:`analysis.attention`): which levels can be probed, the
per-head table of every probed ticket and level, and its mean over heads.
torch is imported only when a probe actually runs.

Sweep table columns (:func:`attention_sweep`)
---------------------------------------------
level : int
sparsity : float
ticket : str
    Ticket name.
layer, head, mean_entropy, ... : see :data:`analysis.attention.ATTENTION_COLUMNS`
    ``dense_entropy`` / ``entropy_change`` compare with the same ticket at
    ``dense_level`` (NaN when that level kept no weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.attention import ATTENTION_COLUMNS, attention_entropy_table

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "ALL_LAYERS",
    "attention_level_summary",
    "attention_sweep",
    "attention_unavailable",
    "probe_levels",
]

ALL_LAYERS = "all layers"
PROBE_EXTRA = "probe"


def probe_levels(run: Run, method: str) -> list[int]:
    """Levels of ``method`` that kept their trained weights (the only ones a probe can rebuild).

    Parameters
    ----------
    run : Run
    method : str

    Returns
    -------
    list of int
        Ascending.
    """
    return [lv for lv in run.levels(method) if run.has_weights(method, lv)]


def attention_unavailable(run: Run, method: str) -> str | None:
    """Why the attention of ``method``'s tickets cannot be probed, or None if it can.

    Parameters
    ----------
    run : Run
    method : str

    Returns
    -------
    str or None
        A sentence for the user: the model has no attention, the run kept no
        weights, or it stores no probe batch.
    """
    model = run.manifest.get("model") or {}
    if not model and run.manifest.get("source"):  # imported checkpoints: masks and weights, no model
        return (
            "This run was imported from checkpoints: it holds masks (and weights) but no model "
            "description to rebuild the network and run it, so attention entropy cannot be read."
        )
    if model.get("name") != "vit":
        return (
            f"The model of this run is `{model.get('name', '?')}`, which has no attention layers: "
            "attention entropy exists only for transformer (ViT) runs such as `fashion-vit-cluster`."
        )
    if not probe_levels(run, method):
        return (
            f"`{method}` kept no trained weights at any level (the run was slimmed), so its tickets "
            "cannot be rebuilt to read their attention."
        )
    if not run.has_extra(PROBE_EXTRA):
        return "The run stores no probe batch (`extra/probe.safetensors`) to read attention on."
    return None


def attention_sweep(
    run: Run,
    method: str,
    tickets: Sequence[int],
    levels: Sequence[int] | None = None,
    *,
    dense_level: int = 0,
    inputs: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per layer and head attention entropy of the chosen tickets at the chosen levels.

    Parameters
    ----------
    run : Run
        A ViT run (see :func:`attention_unavailable`).
    method : str
    tickets : sequence of int
        Ticket indices.
    levels : sequence of int, optional
        Default: every level with weights (:func:`probe_levels`); levels
        without weights are skipped.
    dense_level : int
        Reference for ``entropy_change`` (the unpruned model).
    inputs : ndarray of float, shape (N, C, H, W), optional
        Probe images; default: the run's stored probe batch.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity, ticket`` then :data:`analysis.attention.ATTENTION_COLUMNS`.
    """
    from analysis.attention_probe import probe_attention

    have = probe_levels(run, method)
    wanted = have if levels is None else [lv for lv in levels if lv in have]
    names = run.ticket_names(method)
    frames = []
    for t in tickets:
        dense = None
        if dense_level in have:
            dense = attention_entropy_table(probe_attention(run, method, dense_level, int(t), inputs))
        for level in wanted:
            maps = probe_attention(run, method, level, int(t), inputs)
            df = attention_entropy_table(maps, dense=dense)
            df.insert(0, "ticket", names[int(t)])
            df.insert(0, "sparsity", run.sparsity(method, level))
            df.insert(0, "level", level)
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["level", "sparsity", "ticket", *ATTENTION_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def attention_level_summary(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean over heads of the entropy per level, ticket and layer, and over all layers.

    Parameters
    ----------
    sweep : DataFrame
        Output of :func:`attention_sweep`.

    Returns
    -------
    DataFrame
        Columns ``level, sparsity, ticket, layer, mean_entropy, entropy_change``;
        ``layer`` is a block name or ``"all layers"`` (mean over every head of every block).
    """
    keys = ["level", "sparsity", "ticket"]
    cols = ["mean_entropy", "entropy_change"]
    per_layer = sweep.groupby([*keys, "layer"], sort=False)[cols].mean().reset_index()
    overall = sweep.groupby(keys, sort=False)[cols].mean().reset_index()
    overall.insert(3, "layer", ALL_LAYERS)
    return pd.concat([overall, per_layer], ignore_index=True)[[*keys, "layer", *cols]]
