"""One ticket pair, layer by layer (the drill-down of the similarity heatmap)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.similarity import GLOBAL, LAYER_MEAN

__all__ = ["LAYER_LABELS", "pair_layer_figure", "pair_rows", "selectable_cells"]

# Display names of the pseudo-layers of a similarity table.
LAYER_LABELS = {GLOBAL: "all layers", LAYER_MEAN: "layer mean (equal weights)"}


def pair_rows(table: pd.DataFrame, ticket_a: str, ticket_b: str, level: int | None = None) -> pd.DataFrame:
    """The rows of one unordered ticket pair (either orientation) from a tidy pair table.

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.similarity.similarity_table` (``level`` required) or
        :func:`analysis.similarity.similarity_frame` output.
    ticket_a, ticket_b : str
    level : int, optional
        Level to keep when the table holds several.

    Returns
    -------
    DataFrame
        The pair's rows, one per layer: ``"__global__"`` first, then
        ``"__layer_mean__"`` (equal layer weights), then the layers in table order.
    """
    a, b = str(ticket_a), str(ticket_b)
    rows = table[
        ((table["ticket_a"] == a) & (table["ticket_b"] == b))
        | ((table["ticket_a"] == b) & (table["ticket_b"] == a))
    ]
    if "level" in table.columns:
        if level is None:
            raise ValueError("the table has several levels: pass level=")
        rows = rows[rows["level"] == level]
    glob = rows[rows["layer"] == GLOBAL]
    mean = rows[rows["layer"] == LAYER_MEAN]
    rest = rows[~rows["layer"].isin([GLOBAL, LAYER_MEAN])]
    return pd.concat([glob, mean, rest], ignore_index=True)


def pair_layer_figure(rows: pd.DataFrame, ticket_a: str, ticket_b: str) -> go.Figure:
    """Jaccard, its chance level and J* of one ticket pair, per layer.

    Parameters
    ----------
    rows : DataFrame
        Output of :func:`pair_rows` (columns ``layer, jaccard, jaccard_chance,
        jaccard_star``).
    ticket_a, ticket_b : str
        Names for the title.

    Returns
    -------
    go.Figure
        Bars ``J`` and ``J*`` per layer and a ``chance E[J]`` marker trace; the
        ``"__global__"`` layer is labelled "all layers".
    """
    layers = [LAYER_LABELS.get(lay, str(lay)) for lay in rows["layer"]]
    fig = go.Figure()
    fig.add_bar(x=layers, y=rows["jaccard"], name="J", hovertemplate="%{x}<br>J = %{y:.3f}<extra></extra>")
    fig.add_bar(
        x=layers,
        y=rows["jaccard_star"],
        name="J* (chance-corrected)",
        hovertemplate="%{x}<br>J* = %{y:.3f}<extra></extra>",
    )
    fig.add_scatter(
        x=layers,
        y=rows["jaccard_chance"],
        mode="markers",
        marker={"symbol": "line-ew-open", "size": 28, "line": {"width": 3}, "color": "black"},
        name="chance E[J]",
        hovertemplate="%{x}<br>E[J] = %{y:.3f}<extra></extra>",
    )
    fig.update_layout(
        title=f"{ticket_a} × {ticket_b}, layer by layer",
        barmode="group",
        xaxis_title="layer",
        yaxis_title="similarity",
        margin={"t": 50},
    )
    return fig


def selectable_cells(fig: go.Figure, value_name: str = "value") -> go.Figure:
    """Make every off-diagonal cell of a heatmap clickable as a point selection.

    Plotly heatmaps emit no selection events, so a transparent marker is laid
    on each off-diagonal cell; a click selects it and reports the cell's ``x``
    (column) and ``y`` (row) labels. The first trace of ``fig`` must be the
    ``Heatmap``; the markers carry its hover text instead of it.

    Parameters
    ----------
    fig : go.Figure
        A figure whose first trace is a square ``Heatmap`` with ``x``, ``y`` labels and ``z``.
    value_name : str
        Name of the value in the hover text.

    Returns
    -------
    go.Figure
        ``fig``, with one extra ``Scatter`` trace (named ``"cells"``) of K (K - 1) markers.
    """
    heat = fig.data[0]
    xs, ys, zs = list(heat.x), list(heat.y), heat.z
    cells = [(x, y, zs[i][j]) for i, y in enumerate(ys) for j, x in enumerate(xs) if x != y]
    fig.add_scatter(
        x=[c[0] for c in cells],
        y=[c[1] for c in cells],
        customdata=[[c[2]] for c in cells],
        mode="markers",
        marker={"size": 28, "symbol": "square", "color": "rgba(0,0,0,0)"},
        name="cells",
        showlegend=False,
        hovertemplate=f"%{{y}} × %{{x}}<br>{value_name} = %{{customdata[0]:.3f}}<extra></extra>",
    )
    fig.data[0].hoverinfo = "skip"
    return fig
