"""Figures of attention entropy per layer and head (tables from :mod:`analysis.attention`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

__all__ = ["attention_entropy_heatmap"]


def attention_entropy_heatmap(table: pd.DataFrame, value: str = "mean_entropy") -> go.Figure:
    """Heatmap of one entropy column, layers as rows and heads as columns.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`analysis.attention.attention_entropy_table`.
    value : str
        ``"mean_entropy"`` (0..1), ``"entropy_change"`` (diverging colours around
        0), ``"effective_tokens"`` or ``"mean_entropy_nats"``.

    Returns
    -------
    go.Figure
        One heatmap trace, z of shape (n_layers, n_heads).
    """
    grid = table.pivot(index="layer", columns="head", values=value)
    grid = grid.reindex(list(dict.fromkeys(table["layer"])))  # keep network order
    diverging = value == "entropy_change"
    zmax = float(np.nanmax(np.abs(grid.to_numpy()))) if diverging and grid.size else None
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=[f"head {h}" for h in grid.columns],
            y=[f"layer {layer}" for layer in grid.index],
            colorscale="RdBu" if diverging else "Viridis",
            zmid=0.0 if diverging else None,
            zmin=-zmax if diverging and zmax else (0.0 if value == "mean_entropy" else None),
            zmax=zmax if diverging and zmax else (1.0 if value == "mean_entropy" else None),
            colorbar={"title": value},
        )
    )
    fig.update_layout(yaxis_autorange="reversed", xaxis_title="head", yaxis_title="layer")
    return fig
