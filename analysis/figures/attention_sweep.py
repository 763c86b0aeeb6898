"""Attention entropy against sparsity (tables from :mod:`analysis.attention_sweep`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["attention_entropy_vs_sparsity"]


def attention_entropy_vs_sparsity(summary: pd.DataFrame, layer: str = "all layers") -> go.Figure:
    """Mean normalised attention entropy of each ticket against sparsity.

    Parameters
    ----------
    summary : DataFrame
        :func:`analysis.attention_sweep.attention_level_summary` output
        (``level, sparsity, ticket, layer, mean_entropy``).
    layer : str
        A block name, or ``"all layers"``.

    Returns
    -------
    go.Figure
        One ``lines+markers`` trace per ticket; y in [0, 1] (1 = uniform attention).
    """
    rows = summary[summary["layer"] == layer].sort_values("sparsity")
    fig = go.Figure()
    for ticket, g in rows.groupby("ticket", sort=False):
        fig.add_scatter(
            x=g["sparsity"],
            y=g["mean_entropy"],
            mode="lines+markers",
            name=str(ticket),
            customdata=g[["level"]].to_numpy(),
            hovertemplate="sparsity %{x:.1%} (level %{customdata[0]})<br>entropy %{y:.3f}"
            "<extra>%{fullData.name}</extra>",
        )
    fig.update_layout(
        title=f"Attention entropy against sparsity · {layer}",
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "mean normalised entropy (1 = uniform)", "range": [0, 1.02]},
        legend={"title": "ticket"},
    )
    return fig
