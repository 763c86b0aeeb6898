"""Figures of mask similarity (tables from :mod:`analysis.similarity`)."""

from __future__ import annotations

from typing import Literal

import pandas as pd
import plotly.graph_objects as go

from analysis.similarity import GLOBAL, LAYER_MEAN, cluster_order


def similarity_heatmap(
    matrix: pd.DataFrame,
    *,
    chance: float | None = None,
    order: Literal["cluster", "given"] = "cluster",
    title: str = "Mask similarity (Jaccard)",
    value_name: str = "J",
    zmin: float = 0.0,
    zmax: float = 1.0,
) -> go.Figure:
    """Ticket-by-ticket heatmap, rows and columns ordered by hierarchical clustering.

    Parameters
    ----------
    matrix : DataFrame of float, shape (K, K)
        Square similarity matrix, e.g. :func:`analysis.similarity.pair_matrix`.
    chance : float, optional
        Chance level (e.g. the mean ``jaccard_chance`` of the level), shown in the title.
    order : {"cluster", "given"}
        ``"cluster"``: :func:`analysis.similarity.cluster_order`; ``"given"``: as is.
    title : str
    value_name : str
        Name of the value in the hover text.
    zmin, zmax : float
        Colour scale range.

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Heatmap`` trace.
    """
    labels = cluster_order(matrix) if order == "cluster" else [str(t) for t in matrix.index]
    m = matrix.copy()
    m.index = m.index.astype(str)
    m.columns = m.columns.astype(str)
    m = m.loc[labels, labels]
    if chance is not None:
        title = f"{title}<br><sup>chance level E[J] = {chance:.3f}</sup>"
    fig = go.Figure(
        go.Heatmap(
            z=m.to_numpy(),
            x=labels,
            y=labels,
            zmin=zmin,
            zmax=zmax,
            colorscale="Viridis",
            colorbar={"title": value_name},
            hovertemplate=f"%{{y}} × %{{x}}<br>{value_name} = %{{z:.3f}}<extra></extra>",
        )
    )
    fig.update_layout(title=title, yaxis={"autorange": "reversed", "scaleanchor": "x"})
    return fig


def similarity_vs_sparsity(
    summary: pd.DataFrame,
    *,
    layer: str = GLOBAL,
    title: str = "Mask similarity against sparsity",
) -> go.Figure:
    """Mean Jaccard, chance-corrected J* and the chance level against sparsity.

    Parameters
    ----------
    summary : DataFrame
        :func:`analysis.similarity.level_similarity_summary` output (optionally
        with a ``method`` column, one set of lines per method).
    layer : str
        Layer to show (``"__global__"``: all layers).
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        Per method, three ``Scatter`` traces: ``J`` (with ±1 sd of the pairs),
        ``J*`` and ``chance E[J]``; for ``layer="__global__"`` a fourth,
        ``J* (equal layer weights)``, from the ``"__layer_mean__"`` rows when the
        summary has them (the pooled J* follows the largest layer).
    """
    rows = summary[summary["layer"] == layer].sort_values("sparsity", kind="stable")
    means = summary[summary["layer"] == LAYER_MEAN] if layer == GLOBAL else summary.iloc[:0]
    groups = rows.groupby("method", sort=False) if "method" in rows else [(None, rows)]
    fig = go.Figure()
    for method, df in groups:
        prefix = f"{method}: " if method is not None else ""
        fig.add_scatter(
            x=df["sparsity"],
            y=df["jaccard"],
            error_y={"type": "data", "array": df["jaccard_std"], "visible": True},
            mode="lines+markers",
            name=f"{prefix}J",
            customdata=df[["level", "n_pairs"]],
            hovertemplate="sparsity %{x:.1%}<br>mean J %{y:.3f}<br>level %{customdata[0]}, "
            "%{customdata[1]} pairs<extra></extra>",
        )
        fig.add_scatter(
            x=df["sparsity"],
            y=df["jaccard_star"],
            mode="lines+markers",
            line={"dash": "dash"},
            name=f"{prefix}J* (chance-corrected)" + (", weight-pooled" if len(means) else ""),
        )
        eq = means[means["method"] == method] if method is not None and "method" in means else means
        if len(eq):
            eq = eq.sort_values("sparsity", kind="stable")
            fig.add_scatter(
                x=eq["sparsity"],
                y=eq["jaccard_star"],
                mode="lines+markers",
                line={"dash": "dashdot"},
                marker={"symbol": "diamond"},
                name=f"{prefix}J* (equal layer weights)",
                hovertemplate="sparsity %{x:.1%}<br>mean of per-layer J* %{y:.3f}<extra></extra>",
            )
        fig.add_scatter(
            x=df["sparsity"],
            y=df["jaccard_chance"],
            mode="lines",
            line={"dash": "dot"},
            name=f"{prefix}chance E[J]",
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "mean over ticket pairs"},
    )
    return fig
