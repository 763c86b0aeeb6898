"""Figures of mask coding cost (tables from :mod:`analysis.coding`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from analysis.similarity import GLOBAL

MASK_COSTS = {
    "entropy_bits": "H2 bound",
    "bitmap_bits": "bitmap",
    "index_bits": "index list",
    "csr_bits": "per-row CSR",
}
SAVINGS = {
    "dropped_bits_fp16": "dropped weights (fp16)",
    "dropped_bits_fp32": "dropped weights (fp32)",
}


def coding_cost_bars(frame: pd.DataFrame, ticket: str, *, log_y: bool = True) -> go.Figure:
    """Per-layer mask costs of one ticket next to the bits its dropped weights save.

    Parameters
    ----------
    frame : DataFrame
        :func:`analysis.coding.coding_frame` output, or one level of
        :func:`analysis.coding.coding_table`.
    ticket : str
    log_y : bool
        Logarithmic bit axis (layers differ by orders of magnitude).

    Returns
    -------
    plotly.graph_objects.Figure
        Grouped ``Bar`` traces: four mask costs (solid) and two savings (hatched).
    """
    rows = frame[frame["ticket"].astype(str) == str(ticket)]
    if (rows["layer"] != GLOBAL).any():
        rows = rows[rows["layer"] != GLOBAL]
    fig = go.Figure()
    for col, name in MASK_COSTS.items():
        fig.add_bar(x=rows["layer"], y=rows[col], name=name)
    for col, name in SAVINGS.items():
        fig.add_bar(x=rows["layer"], y=rows[col], name=name, marker_pattern_shape="/")
    fig.update_layout(
        barmode="group",
        title=f"Mask cost against savings, ticket {ticket}",
        xaxis={"title": "layer"},
        yaxis={"title": "bits", "type": "log" if log_y else "linear"},
    )
    return fig


def coding_cost_vs_sparsity(summary: pd.DataFrame, *, log_y: bool = True) -> go.Figure:
    """Mean per-ticket mask costs and savings against sparsity.

    Parameters
    ----------
    summary : DataFrame
        :func:`analysis.coding.coding_level_summary` output.
    log_y : bool

    Returns
    -------
    plotly.graph_objects.Figure
        Six ``Scatter`` traces: four mask costs (solid) and two savings (dashed).
    """
    df = summary.sort_values("sparsity", kind="stable")
    fig = go.Figure()
    for col, name in MASK_COSTS.items():
        fig.add_scatter(x=df["sparsity"], y=df[col], mode="lines+markers", name=name)
    for col, name in SAVINGS.items():
        fig.add_scatter(x=df["sparsity"], y=df[col], mode="lines", line={"dash": "dash"}, name=name)
    fig.update_layout(
        title="Mask cost against savings (mean per ticket)",
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "bits", "type": "log" if log_y else "linear"},
    )
    return fig


def joint_coding_vs_sparsity(table: pd.DataFrame, *, layer: str = GLOBAL, log_y: bool = False) -> go.Figure:
    """Joint against independent coding of all tickets' masks, against sparsity.

    Parameters
    ----------
    table : DataFrame
        :func:`analysis.coding.joint_coding_table` output.
    layer : str
        Layer to show (``"__global__"``: all layers).
    log_y : bool

    Returns
    -------
    plotly.graph_objects.Figure
        ``Scatter`` traces: independent, joint, K bitmaps, and the savings of the
        shared tensor (weights outside the union) at fp16 and fp32.
    """
    df = table[table["layer"] == layer].sort_values("sparsity", kind="stable")
    fig = go.Figure()
    for col, name in {
        "independent_bits": "independent (sum of H2)",
        "joint_bits": "joint (pattern entropy)",
        "bitmap_bits": "K bitmaps",
    }.items():
        fig.add_scatter(x=df["sparsity"], y=df[col], mode="lines+markers", name=name)
    for col, name in SAVINGS.items():
        fig.add_scatter(
            x=df["sparsity"],
            y=df[col],
            mode="lines",
            line={"dash": "dash"},
            name=name.replace("dropped weights", "outside the union"),
        )
    fig.update_layout(
        title="Coding all masks jointly against one by one",
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": "bits", "type": "log" if log_y else "linear"},
    )
    return fig
