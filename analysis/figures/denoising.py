"""Figures of speech enhancement against sparsity (tables from :mod:`analysis.denoising`)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["sisnri_figure"]

_DASH = {"rtl": "solid", "imp": "dash", "independent": "dot"}
_TITLES = {
    "si_snri": "SI-SNR improvement (dB)",
    "si_snr_out": "SI-SNR of the output (dB)",
    "si_snr_in": "SI-SNR of the input (dB)",
}


def sisnri_figure(table: pd.DataFrame, metric: str = "si_snri", paper: dict | None = None) -> go.Figure:
    """One panel per environment (and ``all``), one line per method, metric against sparsity.

    Parameters
    ----------
    table : DataFrame
        Output of :func:`analysis.denoising.denoising_table`.
    metric : {"si_snri", "si_snr_out", "si_snr_in"}
    paper : dict of str to tuple of float, optional
        The paper's values per method at 25 / 50 / 75 % sparsity
        (:data:`analysis.denoising.PAPER_SISNRI`), drawn as open markers on
        the ``all`` panel (for ``si_snri`` only).

    Returns
    -------
    go.Figure
        Panels in the order ``all`` then the environments; lines carry the
        95 % bootstrap band as error bars; hover shows level and n.
    """
    t = table[table["metric"] == metric]
    envs = list(dict.fromkeys(t["environment"]))
    envs = (["all"] if "all" in envs else []) + [e for e in envs if e != "all"]
    fig = make_subplots(rows=1, cols=max(len(envs), 1), shared_yaxes=True, subplot_titles=envs or [""])
    methods = list(dict.fromkeys(t["method"]))
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for col, env in enumerate(envs, start=1):
        for i, method in enumerate(methods):
            rows = t[(t["environment"] == env) & (t["method"] == method)].sort_values("sparsity")
            if rows.empty:
                continue
            fig.add_trace(
                go.Scatter(
                    x=rows["sparsity"],
                    y=rows["value"],
                    mode="lines+markers",
                    name=method,
                    legendgroup=method,
                    showlegend=col == 1,
                    line={"color": palette[i % len(palette)], "dash": _DASH.get(method, "solid")},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": (rows["ci_high"] - rows["value"]).tolist(),
                        "arrayminus": (rows["value"] - rows["ci_low"]).tolist(),
                        "thickness": 1,
                    },
                    customdata=rows[["level", "n"]].to_numpy(),
                    hovertemplate=f"{method} · {env}<br>sparsity %{{x:.1%}} (level %{{customdata[0]}})"
                    "<br>%{y:.2f} dB, n = %{customdata[1]}<extra></extra>",
                ),
                row=1,
                col=col,
            )
            if paper and metric == "si_snri" and env == "all" and method in paper:
                fig.add_trace(
                    go.Scatter(
                        x=[0.25, 0.5, 0.75],
                        y=list(paper[method]),
                        mode="markers",
                        marker={"symbol": "circle-open", "size": 10, "color": palette[i % len(palette)]},
                        name=f"{method} (paper)",
                        legendgroup=f"{method}-paper",
                        hovertemplate=f"{method}, paper: %{{y:.2f}} dB at %{{x:.0%}}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        fig.update_xaxes(title_text="sparsity", tickformat=".0%", row=1, col=col)
    fig.update_yaxes(title_text=_TITLES.get(metric, metric), row=1, col=1)
    fig.update_layout(legend_title_text="method", margin={"t": 40})
    return fig
