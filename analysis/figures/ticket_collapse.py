"""One ticket's collapse in the paper's Figure 2 form: labelled metric and mask signal on twin axes."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

__all__ = ["LABEL_FREE_SIGNALS", "SIGNAL_LABELS", "signal_label", "ticket_collapse_figure"]

# Signals computed from masks and unlabelled predictions only (analysis.collapse);
# every other signal of the curves needs labels.
LABEL_FREE_SIGNALS = (
    "mean_latent_corr",
    "mean_jaccard_star",
    "mean_jaccard",
    "density",
    "min_layer_density",
    "empty_layers",
    "union_fraction",
    "union_size",
    "intersection_size",
    "core_fraction",
    "any_empty_layer",
    "pred_entropy",
    "pred_entropy_se",
)

SIGNAL_LABELS = {
    "balanced_accuracy": "balanced accuracy (1-vs-rest, common held-out threshold)",
    "balanced_accuracy_own": "balanced accuracy (1-vs-rest, own rule)",
    "balanced_accuracy_prior": "balanced accuracy (1-vs-rest, class-prior threshold)",
    "auroc": "AUROC (1-vs-rest)",
    "average_precision": "average precision (1-vs-rest)",
    "pooled_recall": "pooled recall (oracle-routed detectors)",
    "mean_latent_corr": "mean latent correlation to the other tickets (what the alarm reads)",
    "precision": "precision",
    "recall": "recall",
    "accuracy": "K-way accuracy",
    "mean_jaccard": "mean Jaccard to the other tickets",
    "mean_jaccard_star": "mean J* to the other tickets (chance-corrected)",
    "density": "density (kept fraction)",
    "min_layer_density": "smallest layer density",
    "empty_layers": "empty layers",
    "union_fraction": "union of the masks (fraction of weights)",
    "core_fraction": "weights kept by every ticket / union",
    "pred_entropy": "entropy of the label-free predicted labels (nats)",
    "pred_entropy_se": "standard error of that entropy (nats)",
}


def signal_label(signal: str) -> str:
    """Readable name of a collapse signal."""
    if signal.startswith("subset_accuracy_"):
        return f"subset accuracy, {signal.removeprefix('subset_accuracy_')} routing"
    if signal.startswith("accuracy_"):
        return f"K-way accuracy, {signal.removeprefix('accuracy_')} routing"
    return SIGNAL_LABELS.get(signal, signal)


def ticket_collapse_figure(
    curves: pd.DataFrame,
    ticket: int | None = None,
    *,
    mask_signal: str = "mean_jaccard_star",
    metric: str | None = "balanced_accuracy",
    chance: pd.DataFrame | None = None,
    alarm_sparsity: float | None = None,
    collapse_sparsity: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """A labelled metric (left axis) and a mask signal (right axis) against sparsity.

    Parameters
    ----------
    curves : DataFrame
        One method's collapse curves (:func:`analysis.collapse.collapse_curves`
        rows of that method: ``level, sparsity, ticket, signal, value``).
    ticket : int, optional
        Ticket index; None draws the aggregate rows (the mean over tickets).
    mask_signal : str
        Label-free signal, e.g. ``"mean_jaccard_star"``, ``"mean_jaccard"``, ``"density"``.
    metric : str or None
        Labelled signal, e.g. ``"balanced_accuracy"``; None hides every labelled
        quantity (the mask signal then takes the only axis).
    chance : DataFrame, optional
        :func:`analysis.chance.chance_band` output (``sparsity, low, mean, high``),
        drawn as a band on the mask axis when ``mask_signal`` is ``"mean_jaccard"``.
        For ``"mean_jaccard_star"`` chance is 0 by construction and drawn as a line.
    alarm_sparsity : float, optional
        Where the label-free alarm fired (dashed red line).
    collapse_sparsity : float, optional
        Where the labelled metric dropped (dotted black line); ignored when ``metric`` is None.
    title : str, optional

    Returns
    -------
    go.Figure
        Traces: the metric (if any), the mask signal (on ``y2`` when a metric is
        shown), and the chance band or line.
    """
    rows = curves[curves["ticket"].isna()] if ticket is None else curves[curves["ticket"] == ticket]
    rows = rows.sort_values("sparsity")
    mask_axis = "y2" if metric is not None else "y"
    fig = go.Figure()
    if metric is not None:
        m = rows[rows["signal"] == metric]
        fig.add_trace(
            go.Scatter(
                x=m["sparsity"],
                y=m["value"],
                mode="lines+markers",
                name=signal_label(metric),
                line={"color": "#1f77b4", "width": 3},
                hovertemplate="sparsity %{x:.1%}<br>%{y:.3f}<extra>" + signal_label(metric) + "</extra>",
            )
        )
    if chance is not None and len(chance) and mask_signal == "mean_jaccard":
        band = chance.sort_values("sparsity")
        fig.add_trace(
            go.Scatter(
                x=band["sparsity"],
                y=band["high"],
                mode="lines",
                line={"width": 0},
                yaxis=mask_axis,
                showlegend=False,
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=band["sparsity"],
                y=band["low"],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(255,127,14,0.18)",
                yaxis=mask_axis,
                name="chance E[J] (range over pairs)",
                hoverinfo="skip",
            )
        )
    s = rows[rows["signal"] == mask_signal]
    fig.add_trace(
        go.Scatter(
            x=s["sparsity"],
            y=s["value"],
            mode="lines+markers",
            name=signal_label(mask_signal),
            yaxis=mask_axis,
            line={"color": "#ff7f0e", "width": 3, "dash": "dash" if metric is not None else "solid"},
            hovertemplate="sparsity %{x:.1%}<br>%{y:.3f}<extra>" + signal_label(mask_signal) + "</extra>",
        )
    )
    if mask_signal == "mean_jaccard_star" and len(s):
        fig.add_trace(
            go.Scatter(
                x=[s["sparsity"].min(), s["sparsity"].max()],
                y=[0.0, 0.0],
                mode="lines",
                line={"color": "rgba(255,127,14,0.6)", "dash": "dot"},
                yaxis=mask_axis,
                name="chance (J* = 0)",
                hoverinfo="skip",
            )
        )
    if alarm_sparsity is not None:
        fig.add_vline(x=alarm_sparsity, line_dash="dash", line_color="red", annotation_text="alarm")
    if collapse_sparsity is not None and metric is not None:
        fig.add_vline(
            x=collapse_sparsity,
            line_dash="dot",
            line_color="black",
            annotation_text="drop",
            annotation_position="bottom right",
        )
    layout: dict = {
        "xaxis": {"title": "sparsity", "tickformat": ".0%"},
        "yaxis": {"title": signal_label(metric) if metric is not None else signal_label(mask_signal)},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": -0.2},
        "margin": {"t": 50},
    }
    if metric is not None:
        layout["yaxis2"] = {
            "title": signal_label(mask_signal),
            "overlaying": "y",
            "side": "right",
            "showgrid": False,
        }
    if title:
        layout["title"] = title
    fig.update_layout(**layout)
    return fig
