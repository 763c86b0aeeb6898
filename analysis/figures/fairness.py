"""Figures of per-group metrics and fairness gaps (tables from :mod:`analysis.fairness`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["fairness_gap_figure", "group_drop_figure", "group_metric_figure"]


def group_metric_figure(table: pd.DataFrame, metric: str = "accuracy") -> go.Figure:
    """One metric per group with its bootstrap interval; small groups drawn faded.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`analysis.fairness.group_metrics`.
    metric : str

    Returns
    -------
    go.Figure
        One bar trace, x = group, error bars from ``ci_low`` / ``ci_high``.
    """
    t = table[table["metric"] == metric]
    fig = go.Figure(
        go.Bar(
            x=t["group"].astype(str).tolist(),
            y=t["value"],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": (t["ci_high"] - t["value"]).tolist(),
                "arrayminus": (t["value"] - t["ci_low"]).tolist(),
            },
            marker_opacity=[0.35 if s else 1.0 for s in t["small"]],
            customdata=t[["n"]].to_numpy(),
            hovertemplate="%{x}<br>" + metric + " %{y:.3f}<br>n = %{customdata[0]}<extra></extra>",
            name=metric,
        )
    )
    group_by = t["group_by"].iloc[0] if len(t) else "group"
    fig.update_layout(xaxis_title=group_by, yaxis_title=metric)
    return fig


def fairness_gap_figure(
    gaps: pd.DataFrame, metric: str = "accuracy", statistic: str = "difference"
) -> go.Figure:
    """One gap statistic against sparsity, one line per method.

    Parameters
    ----------
    gaps : DataFrame
        Output of :func:`analysis.fairness.fairness_gaps` or ``run_fairness_gaps``
        (``method`` column optional).
    metric : str
        E.g. ``"accuracy"``, or ``"demographic_parity"`` for a binary task.
    statistic : str
        E.g. ``"difference"``, ``"ratio"``, ``"drop_spread"``, ``"worst"``.

    Returns
    -------
    go.Figure
        One line trace per method, with error bars from ``ci_low`` / ``ci_high``
        where the table has them (the joint bootstrap interval of the statistic).
    """
    rows = gaps[(gaps["metric"] == metric) & (gaps["statistic"] == statistic)].sort_values("sparsity")
    if "method" not in rows:
        rows = rows.assign(method="")
    fig = go.Figure()
    for method, g in rows.groupby("method", sort=False):
        has_ci = {"ci_low", "ci_high"} <= set(g) and g["ci_low"].notna().any()
        error = (
            {
                "type": "data",
                "symmetric": False,
                "array": (g["ci_high"] - g["value"]).tolist(),
                "arrayminus": (g["value"] - g["ci_low"]).tolist(),
                "visible": True,
            }
            if has_ci
            else None
        )
        fig.add_trace(
            go.Scatter(
                x=g["sparsity"],
                y=g["value"],
                mode="lines+markers",
                name=str(method),
                error_y=error,
                text=g["group"].astype(object).where(g["group"].notna(), ""),
                customdata=g[["ci_low", "ci_high"]].to_numpy() if has_ci else None,
                hovertemplate="sparsity %{x:.1%}<br>%{y:.3f} %{text}"
                + ("<br>95 % interval [%{customdata[0]:.3f}, %{customdata[1]:.3f}]" if has_ci else "")
                + "<extra>"
                + str(method)
                + "</extra>",
            )
        )
    fig.update_layout(xaxis_title="sparsity", xaxis_tickformat=".0%", yaxis_title=f"{metric} {statistic}")
    return fig


def group_drop_figure(drops: pd.DataFrame, metric: str = "accuracy", method: str | None = None) -> go.Figure:
    """Each group's drop from the dense model against sparsity.

    Parameters
    ----------
    drops : DataFrame
        Output of :func:`analysis.fairness.group_drops` or ``run_group_drops``.
    metric : str
    method : str, optional
        Required when ``drops`` hold several methods.

    Returns
    -------
    go.Figure
        One line trace per group (dashed for groups flagged ``small``), with
        error bars from ``drop_ci_low`` / ``drop_ci_high`` when present.
    """
    rows = drops[drops["metric"] == metric]
    if "method" in rows:
        if method is None and rows["method"].nunique() > 1:
            raise ValueError("drops hold several methods: pass method=")
        if method is not None:
            rows = rows[rows["method"] == method]
    fig = go.Figure()
    for group, g in rows.sort_values("sparsity").groupby("group", sort=True):
        has_ci = {"drop_ci_low", "drop_ci_high"} <= set(g) and g["drop_ci_low"].notna().any()
        fig.add_trace(
            go.Scatter(
                x=g["sparsity"],
                y=g["drop"],
                mode="lines+markers",
                name=str(group),
                line={"dash": "dash" if g["small"].any() else "solid"},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (g["drop_ci_high"] - g["drop"]).tolist(),
                    "arrayminus": (g["drop"] - g["drop_ci_low"]).tolist(),
                    "visible": True,
                    "thickness": 1,
                }
                if has_ci
                else None,
            )
        )
    fig.add_hline(y=0, line_color="black", line_width=1)
    fig.update_layout(
        xaxis_title="sparsity", xaxis_tickformat=".0%", yaxis_title=f"drop in {metric} from the dense model"
    )
    return fig
