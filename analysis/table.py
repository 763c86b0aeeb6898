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

Across seeds (:func:`group_table_frame`), for a run group (one run per seed
of one description, :mod:`analysis.seeds`): each seed's method is taken at
its own level nearest each target, as :func:`table_frame` does for one run,
and every metric is reduced across the seeds that have it to a mean and a
Student-t interval (:func:`analysis.seeds.across_seeds`). One row per
(method, target, metric):

method : str
target : float
metric : str
    As above, plus ``sparsity``: the sparsity each seed reached (0..1).
levels : str
    Levels the seeds used, ``"L6"`` or ``"L6-7"`` when they differ.
level_min, level_max : int
measure, mean, ci_low, ci_high, half_width, std, n_seeds, seeds_label
    :data:`analysis.seeds.SEED_COLUMNS`; ``n_seeds`` counts the seeds that
    have the method (and a finite value).

:func:`paper_cells` lays either table out as the paper prints it (text
cells); :func:`paper_markdown` and :func:`group_paper_markdown` add a header
and print it as markdown. ``python -m analysis table PATH [--sparsity 25 50
75]`` prints it for a run or a run group (``group.json``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from analysis.levels import levels_at
from analysis.metrics import ticket_metrics
from artifacts import run_format as rf

if TYPE_CHECKING:
    from analysis.seeds import Source

__all__ = [
    "GROUP_TABLE_COLUMNS",
    "LABELS",
    "METRIC_ORDER",
    "add_table_command",
    "group_paper_markdown",
    "group_table_frame",
    "level_metrics",
    "paper_cells",
    "paper_markdown",
    "table_frame",
]

TABLE_COLUMNS = ["method", "target", "level", "sparsity", "metric", "value"]
GROUP_TABLE_COLUMNS = [
    "method",
    "target",
    "metric",
    "levels",
    "level_min",
    "level_max",
    "measure",
    "mean",
    "ci_low",
    "ci_high",
    "half_width",
    "std",
    "n_seeds",
    "seeds_label",
]
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


def _seed_frame(run: rf.Run, methods: Sequence[str] | None, targets: Sequence[float]) -> pd.DataFrame:
    """:func:`table_frame` of the methods this seed's run has (a seed may lack one)."""
    have = list(run.methods) if methods is None else [m for m in methods if m in run.methods]
    if not have:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    return table_frame(run, have, targets=targets)


def group_table_frame(
    source: Source,
    methods: Sequence[str] | None = None,
    *,
    targets: Sequence[float] = DEFAULT_TARGETS,
    ci: float = 0.95,
) -> pd.DataFrame:
    """The table across seeds: per (method, target, metric), mean and Student-t interval.

    Parameters
    ----------
    source : RunGroup, Run, sequence of Run, str or Path
        A run group or its folder (its finished seeds), runs of one
        description, or one run (then every row has one seed);
        :func:`analysis.seeds.seed_runs`.
    methods : sequence of str, optional
        Default: every method of each seed's run. A method missing from some
        seeds is aggregated over the seeds that have it.
    targets : sequence of float
        Target sparsities in percent. Each seed's method is scored at its own
        level nearest each target (:func:`table_frame`), so the seeds' levels
        may differ (a shorter sweep, another pruning schedule).
    ci : float
        Interval coverage.

    Returns
    -------
    DataFrame
        Columns :data:`GROUP_TABLE_COLUMNS` (module docstring), rows in the
        per-run table's order, each (method, target) led by its ``sparsity``
        row. Empty when no seed has any of ``methods``.
    """
    from analysis.seeds import across_seeds, per_seed  # lazily: seeds -> overview -> this module

    stacked = per_seed(source, _seed_frame, methods, targets)
    if stacked.empty:
        return pd.DataFrame(columns=GROUP_TABLE_COLUMNS)
    at = stacked.drop_duplicates(["seed", "method", "target"])
    reached = at.assign(metric="sparsity", value=at["sparsity"].astype(float))
    cols = ["seed", "method", "target", "metric", "value"]
    long = pd.concat([reached[cols], stacked[cols]], ignore_index=True)
    long["value"] = long["value"].astype(float)
    out = across_seeds(long, ["method", "target", "metric"], ["value"], ci=ci)
    used = at.groupby(["method", "target"], sort=False)["level"].agg(level_min="min", level_max="max")
    used = used.reset_index()
    used["levels"] = [
        f"L{a}" if a == b else f"L{a}-{b}" for a, b in zip(used["level_min"], used["level_max"], strict=True)
    ]
    out = out.merge(used, on=["method", "target"], how="left")
    out[["level_min", "level_max"]] = out[["level_min", "level_max"]].astype(np.int64)
    return out[GROUP_TABLE_COLUMNS]


def _number(metric: str, value: float) -> Callable[[float], str]:
    """How to print numbers of ``metric`` whose value is about ``value``."""
    if metric == "params":
        return (lambda v: f"{v / 1e3:.1f}K") if value >= 1e3 else (lambda v: f"{v:.0f}")
    return lambda v: f"{v:.3f}"


def _fmt(metric: str, value: float) -> str:
    if np.isnan(value):
        return "–"
    return _number(metric, value)(value)


def _label(metric: str) -> str:
    if metric.startswith("subset_accuracy_"):
        return f"accuracy within each subset, {metric.removeprefix('subset_accuracy_')} routing (mean)"
    return LABELS.get(metric, metric)


def _cell(metric: str, row: Mapping | None, n_total: int) -> str:
    """One cell; a group's cell names its seed count when fewer seeds than the group's have it."""
    if row is None or not np.isfinite(row["mean"]):
        return "–"
    n = int(row["n_seeds"])
    if metric == "sparsity":
        text = f"{100 * row['mean']:.1f} % ({row['levels']})"
    elif n_total == 1:
        text = _fmt(metric, float(row["mean"]))
    else:
        from analysis.seeds import pm_cell

        text = pm_cell(row["mean"], row["half_width"], n, _number(metric, row["mean"]), missing="–")
        if n == 1:  # pm_cell has said "(1 seed)"
            return text
    return text if n_total == 1 or n >= n_total else f"{text} ({n} of {n_total} seeds)"


def paper_cells(
    frame: pd.DataFrame, targets_percent: Sequence[float] = DEFAULT_TARGETS, n_seeds: int | None = None
) -> pd.DataFrame:
    """The paper's layout as text cells: rows (metric, method), one column per target sparsity.

    Parameters
    ----------
    frame : DataFrame
        Output of :func:`group_table_frame` (of a group, or of one run).
    targets_percent : sequence of float
        Target sparsities in percent (columns, in this order).
    n_seeds : int, optional
        Seeds of the group (default: the most seeds any row has). With one
        seed the cells read as the single-run table.

    Returns
    -------
    DataFrame of str
        Columns ``metric`` (its label), ``method``, then ``~<t> %`` per target.
        The first metric is ``sparsity (level)``: the (mean) sparsity reached
        and the levels used; then the metrics in :data:`METRIC_ORDER`, then any
        other. Metric cells: the value (one seed), else ``mean ± half-width``,
        followed by ``(n of N seeds)`` when only n of the group's N seeds have
        it (``(1 seed)`` for one); ``–`` when a method does not have it.
    """
    if n_seeds is None:
        n_seeds = int(frame["n_seeds"].max()) if len(frame) else 0
    n_total = int(n_seeds)
    present = set(frame["metric"]) - {"sparsity"}
    metrics = ["sparsity"] + [m for m in METRIC_ORDER if m in present]
    metrics += sorted(present - set(metrics))
    methods = list(dict.fromkeys(frame["method"]))
    rows_of = {(r["method"], float(r["target"]), r["metric"]): r for r in frame.to_dict("records")}
    cols = [f"~{t:g} %" for t in targets_percent]
    rows = []
    for metric in metrics:
        for method in methods:
            cells = [_cell(metric, rows_of.get((method, float(t), metric)), n_total) for t in targets_percent]
            rows.append((LABELS["sparsity"] if metric == "sparsity" else _label(metric), method, *cells))
    return pd.DataFrame(rows, columns=["metric", "method", *cols])


def _markdown(head: str, cells: pd.DataFrame) -> str:
    cols = list(cells.columns[2:])
    lines = [head, "", "| metric | method | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    previous = None
    for row in cells.itertuples(index=False):
        label, method, *values = row
        lines.append(f"| {label if label != previous else ''} | {method} | " + " | ".join(values) + " |")
        previous = label
    return "\n".join(lines)


def _about(runs: Sequence[rf.Run]) -> str:
    """Dataset, partition and ticket kinds of the first run (kinds of every run), and the threshold rule."""
    first = runs[0]
    ds = first.manifest.get("dataset", {})
    part = first.manifest.get("partition", {})
    kinds = {m: r.manifest["methods"][m].get("ticket_kind") for r in reversed(runs) for m in r.methods}
    kinds = {m: kinds[m] for m in dict.fromkeys(m for r in runs for m in r.methods)}  # first-seen order
    return (
        f"{ds.get('name')}, {part.get('k')} {part.get('kind')} subsets, "
        f"{ds.get('n_test')} test samples; ticket kinds {kinds}. Common threshold: chosen by 2-fold "
        "cross-fitting on the evaluation samples (the run stores no validation predictions)."
    )


def paper_markdown(
    run: str | Path | rf.Run | rf.RunGroup, targets_percent: Sequence[float] = DEFAULT_TARGETS
) -> str:
    """The table as markdown: rows (metric, method), one column per target sparsity.

    Parameters
    ----------
    run : str, Path, Run or RunGroup
        A run; a run group (or a folder holding ``group.json``) is passed on
        to :func:`group_paper_markdown`.
    targets_percent : sequence of float
        Target sparsities in percent.

    Returns
    -------
    str
        A header line, a blank line, then the markdown table. A metric a
        method does not have is shown as ``–``.
    """
    if isinstance(run, rf.RunGroup) or (isinstance(run, str | Path) and rf.is_group(run)):
        return group_paper_markdown(run, targets_percent)
    run = run if isinstance(run, rf.Run) else rf.load_run(run)
    cells = paper_cells(group_table_frame(run, targets=targets_percent), targets_percent, n_seeds=1)
    return _markdown(f"**{run.name}**: {_about([run])}", cells)


def group_paper_markdown(
    source: Source, targets_percent: Sequence[float] = DEFAULT_TARGETS, *, ci: float = 0.95
) -> str:
    """The table across the seeds of a run group, as markdown (:func:`paper_cells`).

    Parameters
    ----------
    source : RunGroup, Run, sequence of Run, str or Path
        See :func:`group_table_frame`.
    targets_percent : sequence of float
        Target sparsities in percent.
    ci : float
        Interval coverage.

    Returns
    -------
    str
        A header line naming the group and its seeds (``"N seeds"``), a blank
        line, then the markdown table. With one seed the table reads as the
        single-run table and the header says ``(1 seed)``.
    """
    from analysis.seeds import seed_runs, seeds_label

    if isinstance(source, str | Path):
        source = rf.load_group(source) if rf.is_group(source) else rf.load_run(source)
    pairs = seed_runs(source)
    runs = [r for _, r in pairs]
    name = source.name if isinstance(source, rf.RunGroup | rf.Run) else runs[0].name
    n = len(pairs)
    seeds = f"{seeds_label(n)}: {', '.join(str(s) for s, _ in pairs)}" if n > 1 else seeds_label(n)
    how = (
        ""
        if n == 1
        else f" Each seed's method at its own level nearest the target; sparsity row: mean sparsity reached "
        f"(levels used); other cells: mean ± half-width of the {100 * ci:g} % Student-t interval across "
        "seeds (n - 1 degrees of freedom), with the seed count where fewer seeds have the method."
    )
    cells = paper_cells(group_table_frame(runs, targets=targets_percent, ci=ci), targets_percent, n_seeds=n)
    return _markdown(f"**{name}** ({seeds}): {_about(runs)}{how}", cells)


def add_table_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``python -m analysis table PATH [--sparsity ...]`` (a run or a run group)."""
    p = subparsers.add_parser(
        "table", help="print the paper's Table 1 for a run, or across the seeds of a run group (markdown)"
    )
    p.add_argument("run", type=Path, help="run folder, or run group folder (holding group.json)")
    p.add_argument(
        "--sparsity", type=float, nargs="+", default=list(DEFAULT_TARGETS), help="target sparsities (%%)"
    )

    def _run(args: argparse.Namespace) -> int:
        print(paper_markdown(args.run, args.sparsity))
        return 0

    p.set_defaults(func=_run)
