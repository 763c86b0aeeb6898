"""Figures of the Overview page (tables from :mod:`analysis.overview`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["metric_label", "results_figure"]

_LABELS = {
    "balanced_accuracy": "balanced accuracy (mean over tickets)",
    "precision": "precision (mean over tickets)",
    "recall": "recall (mean over tickets)",
    "accuracy": "K-way accuracy",
    "params_union": "parameters (union of the tickets)",
    "params_total": "parameters stored",
}


def metric_label(metric: str) -> str:
    """Axis label of a results metric (``accuracy_<routing>`` gets its routing named)."""
    if metric.startswith("accuracy_"):
        return f"K-way accuracy, {metric.removeprefix('accuracy_')} routing"
    return _LABELS.get(metric, metric)


def results_figure(
    results: pd.DataFrame, metric: str = "balanced_accuracy", chosen_sparsity: float | None = None
) -> go.Figure:
    """One metric of every method against sparsity.

    Parameters
    ----------
    results : DataFrame
        Output of :func:`analysis.overview.results_table`
        (``method, level, sparsity, metric, value``).
    metric : str
        Metric to draw.
    chosen_sparsity : float, optional
        Marked with a vertical line (the sparsity chosen in the dashboard).

    Returns
    -------
    go.Figure
        One ``lines+markers`` trace per method (named after it), x = sparsity.
    """
    rows = results[results["metric"] == metric].sort_values(["method", "sparsity"])
    fig = go.Figure()
    for method in dict.fromkeys(results["method"]):
        g = rows[rows["method"] == method]
        if g.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=g["sparsity"],
                y=g["value"],
                mode="lines+markers",
                name=str(method),
                customdata=g[["level"]].to_numpy(),
                hovertemplate="%{fullData.name}<br>level %{customdata[0]}, sparsity %{x:.1%}"
                "<br>%{y:.4g}<extra></extra>",
            )
        )
    if chosen_sparsity is not None:
        fig.add_vline(x=chosen_sparsity, line_dash="dot", line_color="gray")
    fig.update_layout(
        xaxis={"title": "sparsity", "tickformat": ".0%"},
        yaxis={"title": metric_label(metric)},
        legend={"title": "method"},
        margin={"t": 30},
    )
    return fig
