"""Figures of ticket maps and semantic alignment (tables from :mod:`analysis.projection`)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go


def ticket_map_scatter(
    table: pd.DataFrame,
    *,
    color: str = "level",
    symbol: str | None = None,
    hover: Sequence[str] | None = None,
    title: str = "Ticket map (UMAP of Jaccard distance)",
) -> go.Figure:
    """Scatter of a ticket map.

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.projection.ticket_map_table` output (columns ``x, y`` and
        any others).
    color : str
        Column that colours the points (e.g. ``"level"``, ``"method"``, ``"ticket"``).
    symbol : str, optional
        Column that sets the marker symbol (e.g. ``"method"``).
    hover : sequence of str, optional
        Columns in the hover box; default: every column but ``x`` and ``y``.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace per colour (for a discrete column) or one in all.
    """
    hover = [c for c in table.columns if c not in ("x", "y")] if hover is None else list(hover)
    fig = px.scatter(
        table,
        x="x",
        y="y",
        color=color,
        symbol=symbol,
        hover_data=hover,
        title=title,
    )
    # Map coordinates carry no units: hide them, keep the aspect ratio.
    fig.update_xaxes(showticklabels=False, title=None)
    fig.update_yaxes(showticklabels=False, title=None, scaleanchor="x")
    return fig


def alignment_vs_sparsity(
    table: pd.DataFrame,
    *,
    title: str = "Semantic alignment (Spearman, Mantel test)",
) -> go.Figure:
    """Spearman rho of mask against class similarity, per layer group, against sparsity.

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.projection.alignment_table` output.
    title : str

    Returns
    -------
    plotly.graph_objects.Figure
        One ``Scatter`` trace per layer group (solid), p-values in the hover box;
        when the table has partial statistics (``partial_rho`` not all NaN), one
        dashed trace per group more, named ``"<group>, partial (inputs controlled)"``.
    """
    fig = go.Figure()
    colours = px.colors.qualitative.Plotly
    grouped = list(table.sort_values("sparsity", kind="stable").groupby("layer_group", sort=False))
    for i, (group, df) in enumerate(grouped):
        fig.add_scatter(
            x=df["sparsity"],
            y=df["rho"],
            mode="lines+markers",
            name=str(group),
            line={"color": colours[i % len(colours)]},
            customdata=df[["level", "p_value", "n_pairs"]],
            hovertemplate="sparsity %{x:.1%}<br>rho %{y:.3f}<br>level %{customdata[0]}, "
            "Mantel p %{customdata[1]:.3g}, %{customdata[2]} pairs<extra></extra>",
        )
    has_partial = "partial_rho" in table and table["partial_rho"].notna().any()
    for i, (group, df) in enumerate(grouped if has_partial else []):
        fig.add_scatter(
            x=df["sparsity"],
            y=df["partial_rho"],
            mode="lines+markers",
            name=f"{group}, partial (inputs controlled)",
            line={"color": colours[i % len(colours)], "dash": "dash"},
            marker={"symbol": "diamond-open"},
            customdata=df[["level", "partial_p_value"]],
            hovertemplate="sparsity %{x:.1%}<br>partial rho %{y:.3f}<br>level %{customdata[0]}, "
            "partial Mantel p %{customdata[1]:.3g}<extra></extra>",
        )
    fig.update_layout(
        title=title,
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "Spearman rho (dashed: partial, controlling for input similarity)", "range": [-1, 1]},
    )
    return fig
