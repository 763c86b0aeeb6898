"""Figures across seeds: mean curves with their 95 % band (tables from :mod:`analysis.seeds`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

_PALETTE = ("#2f6fbf", "#d1495b", "#2a9d8f", "#e9a03b", "#7b4fa0", "#5d6475")
_NULL = "#8a8f9c"


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def _band(fig: go.Figure, df: pd.DataFrame, name: str, colour: str, dash: str | None, group: str) -> None:
    df = df.sort_values("sparsity")
    x = (100 * df["sparsity"]).tolist()
    banded = df["ci_low"].notna() & df["ci_high"].notna()
    if banded.any():
        b = df[banded]
        bx = (100 * b["sparsity"]).tolist()
        fig.add_trace(
            go.Scatter(
                x=bx + bx[::-1],
                y=b["ci_high"].tolist() + b["ci_low"].tolist()[::-1],
                fill="toself",
                fillcolor=_rgba(colour, 0.18),
                line={"width": 0},
                hoverinfo="skip",
                name=f"{name} · 95 % band",
                legendgroup=group,
                showlegend=False,
            )
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=df["mean"].tolist(),
            mode="lines+markers",
            name=name,
            legendgroup=group,
            line={"color": colour, "dash": dash},
            customdata=df[["ci_low", "ci_high", "n_seeds"]].to_numpy(),
            hovertemplate=(
                f"{name}<br>sparsity %{{x:.1f}} %<br>mean %{{y:.3f}}"
                "<br>95 % CI [%{customdata[0]:.3f}, %{customdata[1]:.3f}]"
                "<br>%{customdata[2]} seed(s)<extra></extra>"
            ),
        )
    )


def seed_band_figure(
    table: pd.DataFrame,
    *,
    by: str = "method",
    null: pd.DataFrame | None = None,
    title: str = "",
    yaxis: str = "",
) -> go.Figure:
    """Mean across seeds against sparsity, one line per ``by`` value, with its 95 % band.

    Parameters
    ----------
    table : DataFrame
        Rows of one measure of :func:`analysis.seeds.across_seeds`: columns
        ``by, sparsity, mean, ci_low, ci_high, n_seeds``. Rows without an
        interval (one seed) draw the line only.
    by : str
        Column naming the curves (e.g. ``method``).
    null : DataFrame, optional
        The same rows of the random-partition control, drawn dashed grey with
        their band, named ``"<by value> · null"``.
    title, yaxis : str

    Returns
    -------
    plotly.graph_objects.Figure
        Per curve a band trace (``fill="toself"``, when some level has an
        interval) and a line trace; x is sparsity in percent.
    """
    fig = go.Figure()
    for i, (key, df) in enumerate(table.groupby(by, sort=False)):
        colour = _PALETTE[i % len(_PALETTE)]
        _band(fig, df, str(key), colour, None, str(key))
        if null is not None and len(null):
            nd = null[null[by] == key]
            if len(nd):
                _band(fig, nd, f"{key} · null", _NULL, "dash", f"{key} · null")
    n = sorted(set(int(v) for v in table["n_seeds"])) if len(table) else []
    seeds = (f"{n[-1]} seeds" if n[-1] > 1 else "1 seed") if n else ""
    fig.update_layout(
        title=f"{title}<br><sup>mean across {seeds}; band: 95 % Student-t interval</sup>" if title else None,
        xaxis_title="sparsity (%)",
        yaxis_title=yaxis,
        hovermode="closest",
        margin={"t": 70 if title else 30},
    )
    return fig
