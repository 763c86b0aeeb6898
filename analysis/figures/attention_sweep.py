"""Attention entropy against sparsity (tables from :mod:`analysis.attention_sweep`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["attention_entropy_vs_sparsity"]


def attention_entropy_vs_sparsity(
    summary: pd.DataFrame, layer: str = "all layers", images: str | None = None
) -> go.Figure:
    """Mean normalised attention entropy of each ticket against sparsity, with intervals.

    Parameters
    ----------
    summary : DataFrame
        :func:`analysis.attention_sweep.attention_level_summary` output
        (``level, sparsity, ticket, layer, mean_entropy``; ``images``,
        ``ci_low``, ``ci_high`` optional).
    layer : str
        A block name, or ``"all layers"``.
    images : str, optional
        Image set to show (``"own subset"`` or ``"all images"``); default: all rows.

    Returns
    -------
    go.Figure
        One ``lines+markers`` trace per ticket, with error bars over probe images
        when the summary has intervals; y in [0, 1] (1 = uniform attention).
    """
    rows = summary[summary["layer"] == layer].sort_values("sparsity")
    if images is not None and "images" in rows:
        rows = rows[rows["images"] == images]
    fig = go.Figure()
    for ticket, g in rows.groupby("ticket", sort=False):
        has_ci = {"ci_low", "ci_high"} <= set(g) and g["ci_low"].notna().any()
        fig.add_scatter(
            x=g["sparsity"],
            y=g["mean_entropy"],
            mode="lines+markers",
            name=str(ticket),
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (g["ci_high"] - g["mean_entropy"]).tolist(),
                "arrayminus": (g["mean_entropy"] - g["ci_low"]).tolist(),
                "visible": True,
            }
            if has_ci
            else None,
            customdata=g[["level"]].to_numpy(),
            hovertemplate="sparsity %{x:.1%} (level %{customdata[0]})<br>entropy %{y:.3f}"
            "<extra>%{fullData.name}</extra>",
        )
    fig.update_layout(
        title=f"Attention entropy against sparsity · {layer}" + (f" · {images}" if images else ""),
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "mean normalised entropy (1 = uniform)", "range": [0, 1.02]},
        legend={"title": "ticket"},
    )
    return fig
