"""Figures of the frozen collapse alarm's evidence (tables from :func:`analysis.alarm.alarm_evidence`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["alarm_evidence_figure"]


def alarm_evidence_figure(
    evidence: pd.DataFrame, alarm_sparsity: float | None = None, title: str | None = None
) -> go.Figure:
    """Each rule's signal against sparsity, with its noise band, its threshold and the alarm.

    Parameters
    ----------
    evidence : DataFrame
        Columns ``rule, signal, level, sparsity, value, low, high, threshold, above``.
    alarm_sparsity : float, optional
        Where the alarm fired (a vertical line).
    title : str, optional

    Returns
    -------
    go.Figure
        One panel per rule; points above the threshold are filled.
    """
    rules = list(dict.fromkeys(evidence["rule"])) or ["(no rule)"]
    fig = make_subplots(
        rows=len(rules), cols=1, shared_xaxes=True, subplot_titles=rules, vertical_spacing=0.12
    )
    for i, rule in enumerate(rules, start=1):
        e = evidence[evidence["rule"] == rule].sort_values("sparsity")
        if e.empty:
            continue
        x = (100 * e["sparsity"]).tolist()
        band = e[["low", "high"]].notna().all(axis=1)
        if band.any():
            xb = (100 * e.loc[band, "sparsity"]).tolist()
            fig.add_trace(
                go.Scatter(
                    x=xb + xb[::-1],
                    y=e.loc[band, "high"].tolist() + e.loc[band, "low"].tolist()[::-1],
                    fill="toself",
                    fillcolor="rgba(31,119,180,0.18)",
                    line={"width": 0},
                    name="noise band",
                    showlegend=i == 1,
                    hoverinfo="skip",
                ),
                row=i,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=e["value"].tolist(),
                mode="lines+markers",
                marker={
                    "symbol": ["circle" if a else "circle-open" for a in e["above"]],
                    "size": 8,
                    "color": "#1f77b4",
                },
                line={"color": "#1f77b4"},
                name=str(e["signal"].iloc[0]),
                customdata=e["level"].tolist(),
                hovertemplate="level %{customdata}<br>sparsity %{x:.1f} %<br>value %{y:.4f}<extra></extra>",
            ),
            row=i,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=e["threshold"].tolist(),
                mode="lines",
                line={"color": "#d62728", "dash": "dash"},
                name="threshold (k × noise)",
                showlegend=i == 1,
            ),
            row=i,
            col=1,
        )
        if alarm_sparsity is not None:
            fig.add_vline(x=100 * alarm_sparsity, line={"color": "#d62728", "width": 1}, row=i, col=1)
    fig.update_xaxes(title_text="sparsity (%)", row=len(rules), col=1)
    fig.update_layout(height=260 * len(rules) + 80, title=title, margin={"t": 60})
    return fig
