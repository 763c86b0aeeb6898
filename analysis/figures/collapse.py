"""Figures of collapse curves and of the alarm's lead times (tables from :mod:`analysis.collapse`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["alarm_lead_figure", "collapse_curve_figure", "collapse_overview_figure"]

_OUTCOME_COLORS = {
    "hit": "#2ca02c",
    "late": "#ff7f0e",
    "miss": "#d62728",
    "false_alarm": "#9467bd",
    "true_negative": "#7f7f7f",
}


def _one_method(curves: pd.DataFrame, method: str | None) -> pd.DataFrame:
    if "method" not in curves:
        return curves
    if method is None:
        methods = curves["method"].unique()
        if len(methods) > 1:
            raise ValueError(f"curves hold several methods {list(methods)}: pass method=")
        return curves
    return curves[curves["method"] == method]


def collapse_curve_figure(
    curves: pd.DataFrame, signal: str, method: str | None = None, ticket_names: list[str] | None = None
) -> go.Figure:
    """One signal against sparsity: a thin line per ticket and the mean in bold.

    Parameters
    ----------
    curves : DataFrame
        Columns ``[method,] level, sparsity, ticket, signal, value``.
    signal : str
        E.g. ``"balanced_accuracy"`` or ``"mean_jaccard_star"``.
    method : str, optional
        Required when ``curves`` hold several methods.
    ticket_names : list of str, optional
        Legend names indexed by ticket.

    Returns
    -------
    go.Figure
        One trace per ticket, then one ``"mean"`` trace (when aggregate rows exist).
    """
    rows = _one_method(curves, method)
    rows = rows[rows["signal"] == signal].sort_values("sparsity")
    fig = go.Figure()
    for ticket, g in rows[rows["ticket"].notna()].groupby("ticket", sort=True):
        name = ticket_names[int(ticket)] if ticket_names else f"ticket {ticket}"
        fig.add_trace(
            go.Scatter(
                x=g["sparsity"], y=g["value"], mode="lines+markers", name=name, line={"width": 1}, opacity=0.6
            )
        )
    mean = rows[rows["ticket"].isna()]
    if len(mean):
        fig.add_trace(
            go.Scatter(
                x=mean["sparsity"],
                y=mean["value"],
                mode="lines+markers",
                name="mean",
                line={"width": 3, "color": "black"},
            )
        )
    fig.update_layout(
        xaxis_title="sparsity", yaxis_title=signal, xaxis_tickformat=".0%", hovermode="x unified"
    )
    return fig


def collapse_overview_figure(
    curves: pd.DataFrame,
    metric: str = "balanced_accuracy",
    method: str | None = None,
    alarm_sparsity: float | None = None,
    collapse_sparsity: float | None = None,
) -> go.Figure:
    """The mean labelled metric and the alarm's overlap signal against sparsity, alarm and drop marked.

    Parameters
    ----------
    curves : DataFrame
        Columns ``[method,] level, sparsity, ticket, signal, value``.
    metric : str
        Labelled signal on the left axis (aggregate row).
    method : str, optional
    alarm_sparsity : float, optional
        Where the label-free alarm fired (dashed red line).
    collapse_sparsity : float, optional
        Where the labelled metric dropped (dotted black line).

    Returns
    -------
    go.Figure
        Two traces (``metric`` on y; on y2 ``"mean latent correlation"``, the
        signal the alarm reads, or ``"mean J*"`` for curves without it) and one
        vertical line per marker given.
    """
    rows = _one_method(curves, method)
    agg = rows[rows["ticket"].isna()].sort_values("sparsity")
    m = agg[agg["signal"] == metric]
    latent = (agg["signal"] == "mean_latent_corr").any()
    j = agg[agg["signal"] == ("mean_latent_corr" if latent else "mean_jaccard_star")]
    name = "mean latent correlation" if latent else "mean J*"
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=m["sparsity"], y=m["value"], mode="lines+markers", name=metric))
    fig.add_trace(go.Scatter(x=j["sparsity"], y=j["value"], mode="lines+markers", name=name, yaxis="y2"))
    if alarm_sparsity is not None:
        fig.add_vline(x=alarm_sparsity, line_dash="dash", line_color="red", annotation_text="alarm")
    if collapse_sparsity is not None:
        fig.add_vline(x=collapse_sparsity, line_dash="dot", line_color="black", annotation_text="drop")
    fig.update_layout(
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": metric},
        yaxis2={
            "title": name + (" of the pruning scores" if latent else " (chance-corrected Jaccard)"),
            "overlaying": "y",
            "side": "right",
        },
        hovermode="x unified",
    )
    return fig


def alarm_lead_figure(evaluation: pd.DataFrame, lead: str = "lead_sparsity") -> go.Figure:
    """Lead time of the alarm per method and ticket, coloured by outcome.

    Parameters
    ----------
    evaluation : DataFrame
        Output of :func:`analysis.collapse.collapse_evaluation` (``method, ticket,
        outcome, lead_levels, lead_sparsity``).
    lead : {"lead_sparsity", "lead_levels"}
        Positive = the alarm fired before the labelled drop. Misses and false
        alarms have no lead and are drawn at 0.

    Returns
    -------
    go.Figure
        One bar trace per outcome present.
    """
    ev = evaluation.copy()
    method = ev["method"].astype(str) if "method" in ev else pd.Series("", index=ev.index)
    ticket = ev["ticket"].astype(object).where(ev["ticket"].notna(), "mean").astype(str)
    ev["x"] = method + " / " + ticket
    fig = go.Figure()
    for outcome, g in ev.groupby("outcome", sort=False):
        fig.add_trace(
            go.Bar(
                x=g["x"],
                y=g[lead].astype(float).fillna(0.0),
                name=str(outcome),
                marker_color=_OUTCOME_COLORS.get(str(outcome)),
            )
        )
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(xaxis_title="method / ticket", yaxis_title=f"{lead} (positive = early warning)")
    return fig
