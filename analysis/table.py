"""The paper's Table 1 for a run, with the threshold-free figures beside it.

Everything is recomputed from the stored predictions by
:func:`analysis.metrics.ticket_metrics` (sklearn.metrics inside): for every
method alike, the one-vs-rest AUROC and average precision of the stored
scores, balanced accuracy at a threshold chosen alike for every method (on
held-out samples) and at the class prior, then each method's own-rule
balanced accuracy, precision and recall (the paper's rows), and the K-way
figures under their honest names (a detector set under oracle routing counts
its pooled recall, not an accuracy). See :mod:`analysis.metrics` for each
definition.

Tidy output (:func:`table_frame`), one row per (method, level, metric):

method : str
target : float
    Target sparsity in percent that picked the level (NaN when the levels
    were given explicitly).
level : int
sparsity : float
    Sparsity of that level, 0..1.
metric : str
    A :func:`~analysis.metrics.ticket_metrics` aggregate, or ``params``
    (``params_total`` of ``level.json``: the union of the masks for RTL, the
    sum over networks for the independent baseline, one ticket for IMP).
value : float

``python -m analysis table RUN [--sparsity 25 50 75]`` prints
:func:`paper_markdown`.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.levels import levels_at
from analysis.metrics import ticket_metrics
from artifacts import run_format as rf

__all__ = ["LABELS", "METRIC_ORDER", "add_table_command", "level_metrics", "paper_markdown", "table_frame"]

TABLE_COLUMNS = ["method", "target", "level", "sparsity", "metric", "value"]
DEFAULT_TARGETS = (25.0, 50.0, 75.0, 90.0)
# Rows of the paper-style table, in order: threshold-free first, then the
# common-threshold, then the paper's own-rule rows, then the K-way figures.
METRIC_ORDER = [
    "auroc",
    "average_precision",
    "balanced_accuracy",
    "balanced_accuracy_prior",
    "balanced_accuracy_own",
    "precision",
    "recall",
    "accuracy",
    "accuracy_max_score",
    "accuracy_centroid",
    "accuracy_oracle",
    "accuracy_oracle_low",
    "accuracy_oracle_high",
    "pooled_recall",
    "params",
]
LABELS = {
    "sparsity": "sparsity (level)",
    "auroc": "AUROC (1-vs-rest, stored scores, mean over tickets)",
    "average_precision": "average precision (1-vs-rest, stored scores, mean)",
    "balanced_accuracy": "balanced accuracy (1-vs-rest) at a threshold chosen alike on held-out samples",
    "balanced_accuracy_prior": "balanced accuracy (1-vs-rest) at the class-prior threshold",
    "balanced_accuracy_own": "balanced accuracy (1-vs-rest) at the method's own rule (paper)",
    "precision": "precision (1-vs-rest, own rule, mean)",
    "recall": "recall (1-vs-rest, own rule, mean)",
    "accuracy": "K-way accuracy, default routing",
    "accuracy_max_score": "K-way accuracy, max-score routing",
    "accuracy_centroid": "K-way accuracy, centroid routing",
    "accuracy_oracle": "K-way accuracy, oracle routing (single ticket: argmax within the true subset)",
    "accuracy_oracle_low": "K-way accuracy, oracle routing, lower bound (records lack the restricted argmax)",
    "accuracy_oracle_high": "K-way accuracy, oracle routing, upper bound",
    "pooled_recall": "pooled recall of the detectors (oracle routing; not an accuracy)",
    "params": "parameters (prunable weights)",
    "subset_accuracy": "accuracy within each subset (mean over subsets)",
}


def level_metrics(predictions: pd.DataFrame, ticket_kind: str = "detector", **kwargs) -> dict[str, float]:
    """Aggregate metrics of one level as a dict (the means over tickets and the K-way figures).

    Parameters
    ----------
    predictions : DataFrame
        A level's predictions (columns: :mod:`artifacts.run_format`).
    ticket_kind : str
        See :func:`analysis.metrics.ticket_metrics`.
    **kwargs
        Passed to :func:`~analysis.metrics.ticket_metrics` (``default_routing``).

    Returns
    -------
    dict of str to float
    """
    t = ticket_metrics(predictions, ticket_kind, **kwargs)
    agg = t[t["ticket"].isna()]
    return {str(m): float(v) for m, v in zip(agg["metric"], agg["value"], strict=True)}


def _levels_for(
    run: rf.Run,
    methods: Sequence[str],
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None,
    targets: Sequence[float],
) -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    for method in methods:
        have = run.levels(method)
        if levels is None:
            for t in targets:
                out.append((method, float(t), levels_at(run, t / 100.0, [method])[method]))
        else:
            want = levels.get(method, []) if isinstance(levels, Mapping) else levels
            out += [(method, np.nan, int(lv)) for lv in sorted(set(want)) if lv in have]
    return out


def table_frame(
    run: str | Path | rf.Run,
    methods: Sequence[str] | None = None,
    levels: Sequence[int] | Mapping[str, Sequence[int]] | None = None,
    *,
    targets: Sequence[float] = DEFAULT_TARGETS,
) -> pd.DataFrame:
    """Tidy table: one row per (method, target or level, metric).

    Parameters
    ----------
    run : str, Path or Run
    methods : sequence of str, optional
        Default: every method of the run with per-sample class records.
    levels : sequence of int or mapping of str to sequence of int, optional
        Levels to score (the same for every method, or per method). Default:
        each method's level nearest each of ``targets``
        (:func:`analysis.levels.nearest_level`).
    targets : sequence of float
        Target sparsities in percent (used when ``levels`` is None).

    Returns
    -------
    DataFrame
        Columns ``method, target, level, sparsity, metric, value`` (module docstring).
    """
    run = run if isinstance(run, rf.Run) else rf.load_run(run)
    methods = list(methods or run.methods)
    rows = []
    cache: dict[tuple[str, int], dict[str, float]] = {}
    for method, target, level in _levels_for(run, methods, levels, targets):
        entry = run.manifest["methods"][method]
        info = run.level_info(method, level)
        if (method, level) not in cache:
            kind = entry.get("ticket_kind", "detector")
            preds = run.predictions(method, level)
            values = (
                level_metrics(preds, kind, default_routing=entry.get("default_routing"))
                if {"label", "subset", "pred"} <= set(preds.columns)
                else {}
            )
            values["params"] = float(info.get("params_total", np.nan))
            cache[(method, level)] = values
        for metric, value in cache[(method, level)].items():
            rows.append((method, target, level, float(info["sparsity"]), metric, value))
    df = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    df["level"] = df["level"].astype(np.int64)
    return df


def _fmt(metric: str, value: float) -> str:
    if np.isnan(value):
        return "–"
    if metric == "params":
        return f"{value / 1e3:.1f}K" if value >= 1e3 else f"{value:.0f}"
    return f"{value:.3f}"


def paper_markdown(run: str | Path | rf.Run, targets_percent: Sequence[float] = DEFAULT_TARGETS) -> str:
    """The table as markdown: rows (metric, method), one column per target sparsity.

    Parameters
    ----------
    run : str, Path or Run
    targets_percent : sequence of float
        Target sparsities in percent.

    Returns
    -------
    str
        A header line, a blank line, then the markdown table. A metric a
        method does not have is shown as ``–``.
    """
    run = run if isinstance(run, rf.Run) else rf.load_run(run)
    tidy = table_frame(run, targets=targets_percent)
    present = set(tidy["metric"])
    metrics = ["sparsity"] + [m for m in METRIC_ORDER if m in present]
    metrics += sorted(present - set(metrics))
    ds = run.manifest.get("dataset", {})
    part = run.manifest.get("partition", {})
    kinds = {m: run.manifest["methods"][m].get("ticket_kind") for m in run.methods}
    head = (
        f"**{run.name}**: {ds.get('name')}, {part.get('k')} {part.get('kind')} subsets, "
        f"{ds.get('n_test')} test samples; ticket kinds {kinds}. Common threshold: chosen by 2-fold "
        "cross-fitting on the evaluation samples (the run stores no validation predictions)."
    )
    cols = [f"~{t:g} %" for t in targets_percent]
    lines = [head, "", "| metric | method | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for metric in metrics:
        for i, method in enumerate(run.methods):
            sub = tidy[tidy["method"] == method]
            cells = []
            for t in targets_percent:
                at = sub[sub["target"] == float(t)]
                if metric == "sparsity":
                    cells.append(f"{100 * at['sparsity'].iloc[0]:.1f} % (L{at['level'].iloc[0]})")
                    continue
                hit = at[at["metric"] == metric]["value"]
                cells.append(_fmt(metric, float(hit.iloc[0]) if len(hit) else np.nan))
            label = LABELS.get(metric, metric)
            if metric.startswith("subset_accuracy_"):
                label = (
                    f"accuracy within each subset, {metric.removeprefix('subset_accuracy_')} routing (mean)"
                )
            lines.append(f"| {label if i == 0 else ''} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_table_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``python -m analysis table RUN [--sparsity ...]``."""
    p = subparsers.add_parser("table", help="print the paper's Table 1 for a run (markdown)")
    p.add_argument("run", type=Path, help="run folder")
    p.add_argument(
        "--sparsity", type=float, nargs="+", default=list(DEFAULT_TARGETS), help="target sparsities (%%)"
    )

    def _run(args: argparse.Namespace) -> int:
        print(paper_markdown(args.run, args.sparsity))
        return 0

    p.set_defaults(func=_run)
