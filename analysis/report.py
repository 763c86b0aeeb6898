"""One run, every table and figure, one self-contained HTML file (no browser, no server).

``python -m analysis report RUN [--out FILE] [--level L]`` writes it; the
dashboard offers the same file as a download. The page embeds plotly.js once,
so it opens offline; figures stay interactive.

Sections: overview (description, subsets, methods, levels, results, collapse
alarm), similarity, collapse, fairness, projection, coding cost, attention.
A section that does not apply to the run (one ticket only, no group column,
no transformer) says why instead of showing nothing.
"""

from __future__ import annotations

import argparse
import html
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from analysis.seeds import Source
    from artifacts.run_format import Run

__all__ = ["add_report_command", "build_group_report", "build_report", "write_group_report", "write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1f2430; padding: 0 1rem; }
h1 { margin-bottom: 0; } h2 { border-bottom: 2px solid #e0e3eb; padding-bottom: .3rem; margin-top: 2.5rem; }
nav a { margin-right: 1rem; } .caption { color: #5d6475; font-size: .9rem; }
table.data { border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1.5rem; }
table.data th, table.data td { border: 1px solid #e0e3eb; padding: .25rem .5rem; text-align: left;
       font-variant-numeric: tabular-nums; }
table.data th { background: #f4f5f8; }
.note { background: #eef4fb; border-left: 4px solid #2f6fbf; padding: .6rem 1rem; margin: 1rem 0; }
details { margin: .5rem 0 1rem; }
"""


_NO_LABELS = (
    "No method of this run records class predictions (e.g. an implicit neural representation scored by "
    "PSNR): the labelled collapse and fairness views do not apply."
)


class _Page:
    """Accumulates the body of the report."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.sections: list[tuple[str, str]] = []

    def h2(self, title: str) -> None:
        anchor = title.lower().replace(" ", "-")
        self.sections.append((anchor, title))
        self.parts.append(f'<h2 id="{anchor}">{html.escape(title)}</h2>')

    def h3(self, title: str) -> None:
        self.parts.append(f"<h3>{html.escape(title)}</h3>")

    def text(self, text: str, cls: str = "caption") -> None:
        self.parts.append(f'<p class="{cls}">{html.escape(text)}</p>')

    def note(self, text: str) -> None:
        self.parts.append(f'<div class="note">{html.escape(text)}</div>')

    def table(self, df: pd.DataFrame, caption: str | None = None, collapsed: bool = False) -> None:
        body = df.to_html(index=False, classes="data", border=0, na_rep="—", float_format=_float)
        if collapsed:
            summary = html.escape(caption or "table")
            self.parts.append(f"<details><summary>{summary} ({len(df)} rows)</summary>{body}</details>")
            return
        self.parts.append(body)
        if caption:
            self.text(caption)

    def figure(self, fig: go.Figure, caption: str | None = None) -> None:
        self.parts.append(fig.to_html(full_html=False, include_plotlyjs=False, default_height="460px"))
        if caption:
            self.text(caption)


def _level_of(run: Run, method: str, level: int) -> int:
    """``method``'s level nearest the sparsity of ``level`` (of the first method that has it)."""
    from analysis.levels import nearest_level

    owner = next((m for m in run.methods if level in run.levels(m)), run.methods[0])
    target = run.sparsity(owner, level) if level in run.levels(owner) else 0.0
    return nearest_level(run, method, target)


def _float(x: float) -> str:
    return f"{x:.4g}"


def _overview(page: _Page, run: Run, level: int, alarm_eval: pd.DataFrame | None) -> None:
    from analysis import overview as ov
    from analysis.figures.overview import results_figure

    page.h2("Overview")
    page.table(ov.describe_run(run))
    page.h3("Subsets and their tickets")
    page.table(ov.subset_table(run))
    page.h3("Methods")
    page.table(ov.method_table(run))
    levels = ov.level_table(run)
    page.table(levels, "Sparsity and parameter counts of every level", collapsed=True)
    page.h3("Results")
    results = ov.results_table(run)
    shown = sorted({level, *ov.paper_levels(levels, run.methods)})
    page.table(
        ov.paper_table(results[results["level"].isin(shown)]),
        "One-vs-rest, averaged over tickets, for every method alike: auroc and average_precision from the "
        "stored scores (no threshold); balanced_accuracy at a threshold chosen on held-out samples (2-fold "
        "cross-fitting on the evaluation split, or the validation split when the run stores one); "
        "balanced_accuracy_prior at the class prior. The paper's rows at each method's own rule: "
        "balanced_accuracy_own, precision, recall. accuracy: K-way under the default routing; "
        "accuracy_<routing> under each routing; accuracy_oracle of one ticket for all data: its argmax "
        "within the true subset's classes (_low/_high: bounds when the run does not store it). "
        "pooled_recall: oracle-routed detectors (recall, not accuracy). params_union: weights kept by at "
        "least one ticket; params_total: parameters the method stores.",
    )
    sparsity = float(levels.loc[levels["level"] == level, "sparsity"].iloc[0])
    for metric in ("auroc", "balanced_accuracy", "accuracy"):
        if (results["metric"] == metric).any():
            page.figure(results_figure(results, metric, sparsity))
    page.table(ov.paper_table(results), "Results at every level", collapsed=True)
    page.h3("Collapse alarm")
    if alarm_eval is None:
        page.note(_NO_LABELS)
    else:
        page.table(ov.alarm_overview(alarm_eval))


def _similarity(page: _Page, run: Run, level: int) -> None:
    from analysis import similarity as sim
    from analysis.figures.similarity import similarity_heatmap, similarity_vs_sparsity

    page.h2("Similarity")
    methods = [m for m in run.methods if len(run.ticket_names(m)) > 1]
    if not methods:
        page.note("Every method of this run has a single ticket: there are no ticket masks to compare.")
        return
    summaries = []
    for method in methods:
        table = sim.similarity_table(run, method, layers=True)
        lv = _level_of(run, method, level)
        matrix = sim.pair_matrix(table, "jaccard", level=lv, tickets=run.ticket_names(method))
        chance = float(
            table.loc[(table["level"] == lv) & (table["layer"] == sim.GLOBAL), "jaccard_chance"].mean()
        )
        page.h3(f"{method}, level {lv} ({run.sparsity(method, lv):.1%} sparsity)")
        page.figure(similarity_heatmap(matrix, chance=chance, title=f"{method}: Jaccard, all layers"))
        summary = sim.level_similarity_summary(table)
        summary.insert(0, "method", method)
        summaries.append(summary)
        page.table(
            table[table["level"] == lv], f"{method}: every pair and layer at level {lv}", collapsed=True
        )
        disjoint = sim.disjoint_layers(sim.method_shared_rows(run, method))
        if disjoint:
            page.note(
                f"{method}: {', '.join(disjoint)} left out of the layer mean and of alignment "
                "(each ticket owns its own rows there: disjoint by construction)."
            )
    both = pd.concat(summaries, ignore_index=True)
    page.figure(
        similarity_vs_sparsity(both),
        "J* pooled over all weights (follows the largest layer) beside J* averaged with equal layer weights.",
    )
    page.table(both, "Mean pair measures per level and layer", collapsed=True)


def _collapse(page: _Page, run: Run, curves: pd.DataFrame | None, evaluation: pd.DataFrame | None) -> None:
    from analysis.collapse import CollapseAlarm, alarm_summary
    from analysis.figures.collapse import alarm_lead_figure
    from analysis.figures.ticket_collapse import ticket_collapse_figure

    page.h2("Collapse")
    if curves is None or evaluation is None:
        page.note(_NO_LABELS)
        return
    page.text(
        "Mean labelled metric (left axis) and the alarm's mask signal (right axis: the tickets' mean latent "
        "correlation, which stays constant across densities when the tickets are equally alike, unlike J*) "
        "against sparsity; the dashed red line marks where the label-free alarm fired, the dotted black "
        "line where mean balanced accuracy fell 0.05 below the dense reference's (the dense model trained "
        "on all the data, IMP level 0; a method's own level 0 in runs that do not name one)."
    )
    for method in dict.fromkeys(curves["method"]):
        c = curves[curves["method"] == method].drop(columns="method")
        alarm = CollapseAlarm().fit(c)
        ev = evaluation[(evaluation["method"] == method) & evaluation["ticket"].isna()]
        drop = ev["collapse_sparsity"].iloc[0] if len(ev) else None
        multi = len(run.ticket_names(method)) > 1
        page.h3(method)
        page.figure(
            ticket_collapse_figure(
                c,
                None,
                mask_signal="mean_latent_corr" if multi else "density",
                metric="balanced_accuracy",
                alarm_sparsity=alarm.sparsity_,
                collapse_sparsity=None if drop is None or pd.isna(drop) else float(drop),
                title=f"{method}: mean over tickets",
            )
        )
        page.table(alarm.trace_, f"{method}: alarm trace (label-free, one row per level)", collapsed=True)
    page.h3("Lead time of the alarm, and what stopping at it costs")
    page.table(
        alarm_summary(evaluation, ["method"]),
        "Bounded lead: hit = fired 1-2 levels before the labelled drop; early = sooner; late = at the drop "
        "or after; miss = never fired; false alarm = fired, nothing dropped. Regret of stopping at the "
        "alarm: sparsity given up (against the last level before the drop, or the end of the sweep) and "
        "metric lost beyond the margin.",
    )
    page.figure(alarm_lead_figure(evaluation))
    page.table(evaluation, "Alarm against each ticket's labelled drop", collapsed=True)


def _fairness(page: _Page, run: Run, level: int, labelled: list[str]) -> None:
    from analysis.fairness import group_metrics, run_fairness_gaps
    from analysis.figures.fairness import fairness_gap_figure, group_metric_figure

    page.h2("Fairness")
    groups = run.groups()
    if not groups:
        page.note("The run records no group column (class, cluster, sex, race, ...): nothing to audit.")
        return
    if not labelled:
        page.note(_NO_LABELS)
        return
    for group_by in groups:
        page.h3(f"Groups: {group_by}")
        gaps = run_fairness_gaps(run, group_by, labelled)
        page.figure(
            fairness_gap_figure(gaps, "accuracy", "difference"),
            "Accuracy gap (best - worst group), 95 % joint stratified bootstrap interval.",
        )
        page.figure(
            fairness_gap_figure(gaps, "accuracy", "worst"), "Worst group's accuracy, 95 % bootstrap interval."
        )
        page.figure(fairness_gap_figure(gaps, "accuracy", "drop_max"), "Largest drop of a group from dense.")
        for method in labelled:
            lv = _level_of(run, method, level)
            table = group_metrics(run.predictions(method, lv), group_by, n_boot=200)
            page.figure(
                group_metric_figure(table, "accuracy"),
                f"{method}, level {lv}: accuracy per group, 95 % Wilson interval (faded: small group, "
                "by the count the metric rests on).",
            )
            page.table(table, f"{method}, level {lv}: every group metric", collapsed=True)
        page.table(gaps, f"Gaps by {group_by} at every level", collapsed=True)


def _projection(page: _Page, run: Run, level: int) -> None:
    from analysis.figures.projection import alignment_vs_sparsity, ticket_map_scatter
    from analysis.overview import method_capabilities
    from analysis.projection import alignment_facts, alignment_table, ticket_map_table

    page.h2("Projection")
    caps = method_capabilities(run).set_index("method")
    lead = caps["n_tickets"].idxmax()
    same = [m for m in run.methods if caps.loc[m, "layers"] == caps.loc[lead, "layers"]]
    if sum(len(run.ticket_names(m)) for m in same) >= 2:
        table = ticket_map_table(run, same, [level], joint=True)
        page.figure(
            ticket_map_scatter(table, color="ticket", symbol="method"), "Tickets by Jaccard distance."
        )
    if len(same) < len(run.methods):
        page.note(f"Not mapped (other layer shapes): {', '.join(m for m in run.methods if m not in same)}.")
    for method in [m for m in run.methods if len(run.ticket_names(m)) > 1]:
        try:
            align = alignment_table(run, method)
        except KeyError:
            page.note(f"{method}: no class-similarity reference for its tickets; alignment not computed.")
            continue
        page.figure(alignment_vs_sparsity(align, title=f"{method}: semantic alignment"))
        facts = alignment_facts(run, method, align)
        if facts["inputs_rho"] is not None:
            page.text(
                f"Control: the class hierarchy's Mantel rho with the centroids' pixel-space similarity is "
                f"{facts['inputs_rho']:.2f} (p = {facts['inputs_p']:.3g}). {facts['verdict']}"
            )
        page.table(align, f"{method}: alignment per level and layer group", collapsed=True)


def _coding(page: _Page, run: Run) -> None:
    from analysis.coding import coding_level_summary, coding_table, joint_coding_table
    from analysis.figures.coding import coding_cost_vs_sparsity, joint_coding_vs_sparsity

    page.h2("Coding cost")
    for method in run.methods:
        page.h3(method)
        summary = coding_level_summary(coding_table(run, method))
        page.figure(coding_cost_vs_sparsity(summary))
        page.table(summary, f"{method}: mean per-ticket costs per level", collapsed=True)
        if len(run.ticket_names(method)) > 1:
            page.figure(joint_coding_vs_sparsity(joint_coding_table(run, method)))


def _attention(page: _Page, run: Run, level: int) -> None:
    from analysis.attention_sweep import (
        ALL_IMAGES,
        OWN_IMAGES,
        attention_level_summary,
        attention_probe_tables,
        attention_trend,
        attention_unavailable,
        attention_verdict,
    )
    from analysis.figures.attention import attention_entropy_heatmap
    from analysis.figures.attention_sweep import attention_entropy_vs_sparsity
    from analysis.levels import dense_reference, nearest_level

    page.h2("Attention")
    for method in run.methods:
        reason = attention_unavailable(run, method)
        if reason is not None:
            page.note(f"{method}: {reason}")
            continue
        k = len(run.ticket_names(method))
        ref = dense_reference(run, method)  # the dense model trained on all the data
        tables = attention_probe_tables(run, method, list(range(k)), reference=ref)
        sweep = tables["heads"]
        summary = attention_level_summary(sweep, tables["images"], reference=tables["reference"])
        trend = attention_trend(summary)
        page.h3(method)
        page.text(attention_verdict(trend, OWN_IMAGES if k > 1 else ALL_IMAGES), cls="")
        for image_set in dict.fromkeys(summary["images"]):
            page.figure(
                attention_entropy_vs_sparsity(summary, images=image_set),
                f"{image_set}: 95 % Student-t intervals over probe images.",
            )
        sweep = sweep[sweep["images"] == ALL_IMAGES]
        probed = sweep[["level", "sparsity"]].drop_duplicates().assign(method=method)
        lv = nearest_level(probed, method, run.sparsity(method, _level_of(run, method, level)))
        first = run.ticket_names(method)[0]
        page.figure(
            attention_entropy_heatmap(sweep[(sweep["level"] == lv) & (sweep["ticket"] == first)]),
            f"{method}, ticket {first}, level {lv}: normalised entropy per layer and head.",
        )
        page.table(summary, f"{method}: entropy per level, ticket and layer", collapsed=True)
        page.table(trend, f"{method}: entropy against sparsity, per ticket and image set", collapsed=True)


def build_report(run: Run, *, level: int | None = None, progress: Callable[[str], None] | None = None) -> str:
    """Every table and figure of one run as a self-contained HTML page.

    Parameters
    ----------
    run : Run
    level : int, optional
        Level of the at-one-sparsity views (heatmaps, group metrics, map);
        default: the level nearest 50 % sparsity. Methods without that level
        use their nearest one.
    progress : callable, optional
        Called with the name of each section as it starts.

    Returns
    -------
    str
        A full HTML document (plotly.js inline: about 5 MB, opens offline).
    """
    from plotly.offline import get_plotlyjs

    from analysis import overview as ov
    from analysis.collapse import collapse_curves

    say = progress or (lambda _: None)
    levels = ov.level_table(run)
    if level is None:
        level = ov.paper_levels(levels, run.methods, targets=(0.5,))[0]
    elif level not in set(levels["level"]):
        raise ValueError(f"no level {level} in {run.path} (levels {sorted(set(levels['level']))})")
    page = _Page()
    caps = ov.method_capabilities(run)
    labelled = list(caps.loc[caps["classification"], "method"])
    say("collapse signals")
    curves = collapse_curves(run, labelled) if labelled else None
    from analysis.levels import dense_reference

    ref = dense_reference(run)
    evaluation = ov.collapse_evaluation_by_method(curves, reference=ref) if labelled else None
    say("overview")
    _overview(page, run, level, evaluation)
    say("similarity")
    _similarity(page, run, level)
    say("collapse")
    _collapse(page, run, curves, evaluation)
    say("fairness")
    _fairness(page, run, level, labelled)
    say("projection")
    _projection(page, run, level)
    say("coding cost")
    _coding(page, run)
    say("attention")
    _attention(page, run, level)

    nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in page.sections)
    title = f"{run.name} · Routing the Lottery report"
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(run.name)}</h1>"
        f"<p class='caption'>Routing the Lottery · run <code>{html.escape(str(run.path))}</code> · "
        f"views at level {level} · generated {stamp}</p><nav>{nav}</nav>"
        + "\n".join(page.parts)
        + "</body></html>\n"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None, *, level: int | None = None) -> Path:
    """Write :func:`build_report` of the run in ``run_dir`` to ``out``.

    Parameters
    ----------
    run_dir : str or Path
    out : str or Path, optional
        Default: ``<run name>-report.html`` in the current folder (never inside
        the run, so embedded runs stay untouched).
    level : int, optional
        See :func:`build_report`.

    Returns
    -------
    Path
        The file written.
    """
    from artifacts.run_format import load_run

    run = load_run(run_dir)
    out = Path(out) if out is not None else Path(f"{run.name}-report.html")
    text = build_report(run, level=level)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


# ----------------------------------------------------------------------------- run groups (across seeds)


def _seed_section_results(page: _Page, group: Source, methods: list[str], n_seeds: int) -> None:
    from analysis.seeds import mean_pm_table, seed_table
    from analysis.table import group_table_frame, paper_cells

    page.h2("Results across seeds")
    page.table(
        paper_cells(group_table_frame(group, methods), n_seeds=n_seeds),
        "The paper's table across seeds, as python -m analysis table GROUP prints it: each seed's method "
        "at its own level nearest each target sparsity; sparsity row: the mean sparsity reached and the "
        "levels used; other cells: mean ± half-width of the 95 % Student-t interval across seeds, with the "
        "seed count where fewer seeds have the method. A group of one seed shows the single-run values.",
    )
    res = seed_table(group, "results", methods)
    page.table(
        mean_pm_table(res),
        "Every level: mean ± half-width of the 95 % Student-t interval across seeds, per method and level "
        "(columns: the metrics of the single-run report). A cell marked (1 seed) has no interval.",
        collapsed=True,
    )
    page.table(res, "Results across seeds, tidy (mean, ci_low, ci_high, n_seeds)", collapsed=True)


def _seed_section_similarity(page: _Page, group: Source, null: Source | None, null_hint: str) -> None:
    from analysis.figures.seeds import seed_band_figure
    from analysis.seeds import SEED_TABLES, across_seeds, null_long, null_similarity_table, per_seed
    from analysis.similarity import GLOBAL, LAYER_MEAN

    page.h2("Similarity across seeds")
    fn, keys, values = SEED_TABLES["similarity"]
    stacked = per_seed(group, fn)
    if stacked.empty:
        page.note("No method has more than one ticket: there are no ticket pairs to compare.")
        return
    sim = across_seeds(stacked, keys, values)
    nulls = None
    if null is not None:
        table = null_similarity_table(group, null, real_stacked=stacked)
        nulls = null_long(table)
    for layer, what in ((GLOBAL, "pooled over all weights"), (LAYER_MEAN, "equal layer weights")):
        for measure, name in (("jaccard", "J"), ("jaccard_star", "J*")):
            rows = sim[(sim["layer"] == layer) & (sim["measure"] == measure)]
            nd = None
            if nulls is not None:
                hit = (nulls["layer"] == layer) & (nulls["measure"] == measure)
                nd = nulls[hit & (nulls["side"] == "null")]
            page.figure(
                seed_band_figure(rows, null=nd, title=f"Mean pairwise {name}, {what}", yaxis=name),
            )
    page.table(sim, "Similarity across seeds, tidy", collapsed=True)
    page.h3("Null control: a random partition of the same sizes")
    if null is None:
        page.note(null_hint)
        return
    page.table(
        table,
        "Mean pairwise J and J* per level of the real tickets and of the random-partition control (same "
        "description, data.partition=random), each with its 95 % interval across seeds, and the difference "
        "real - null with its interval (paired by seed when both have the same seeds, else Welch).",
    )


def _seed_section_collapse(page: _Page, group: Source, labelled: list[str]) -> None:
    from analysis.figures.seeds import seed_band_figure
    from analysis.seeds import seed_table

    page.h2("Collapse across seeds")
    if not labelled:
        page.note(_NO_LABELS)
        return
    col = seed_table(group, "collapse", labelled)
    agg = col[col["ticket"].isna()]
    for signal, name in (
        ("balanced_accuracy", "balanced accuracy"),
        ("accuracy", "K-way accuracy"),
        ("mean_jaccard_star", "mean J*"),
    ):
        rows = agg[agg["signal"] == signal]
        if len(rows):
            page.figure(seed_band_figure(rows, title=f"Mean over tickets: {name}", yaxis=name))
    page.table(agg.drop(columns="ticket"), "Collapse signals across seeds (aggregate rows)", collapsed=True)


def _seed_section_fairness(page: _Page, group: Source, run: Run, labelled: list[str]) -> None:
    from analysis.seeds import seed_table

    page.h2("Fairness gaps across seeds")
    group_cols = run.groups()
    if not labelled or not group_cols:
        page.note("No group column in the predictions (or no labelled method): no fairness gap to compare.")
        return
    gaps = seed_table(group, "fairness", labelled, group_by=group_cols[0], metrics=["accuracy"], n_boot=0)
    page.table(
        gaps[gaps["statistic"] == "difference"],
        f"Accuracy gap (best - worst {group_cols[0]} group) per level: mean and 95 % interval across seeds.",
    )
    page.table(gaps, "Every gap statistic across seeds", collapsed=True)


def _seed_section_attention(page: _Page, group: Source, run: Run) -> None:
    from analysis.attention_sweep import ALL_LAYERS
    from analysis.figures.seeds import seed_band_figure
    from analysis.seeds import SEED_TABLES, across_seeds, attention_skipped, per_seed, seed_runs, seeds_label

    page.h2("Attention across seeds")
    if (run.manifest.get("model") or {}).get("name") != "vit":
        page.note(next(iter(attention_skipped(run).values()), "No method of this run can be probed."))
        return
    fn, keys, values = SEED_TABLES["attention"]
    pairs = seed_runs(group)
    for method in run.methods:
        page.h3(method)
        for seed, seed_run in pairs:
            why = attention_skipped(seed_run, [method]).get(method)
            if why is not None:
                page.note(f"Seed {seed} is left out: {why}")
        stacked = per_seed(group, fn, [method])
        if stacked.empty:
            continue
        table = across_seeds(stacked, keys, values)
        n = int(stacked["seed"].nunique())
        for image_set in dict.fromkeys(table["images"]):
            rows = table[
                (table["layer"] == ALL_LAYERS)
                & (table["images"] == image_set)
                & (table["measure"] == "mean_entropy")
            ]
            page.figure(
                seed_band_figure(
                    rows,
                    by="ticket",
                    title=f"{method}: attention entropy, all layers, {image_set}",
                    yaxis="mean normalised entropy (1 = uniform)",
                ),
                f"One line per ticket: the mean over {seeds_label(n)} of each seed's mean entropy over its "
                "probe images; band: 95 % Student-t interval across seeds"
                + (" (one seed: no interval)." if n < 2 else "."),
            )
        page.table(
            table,
            f"{method}: entropy and change from the dense reference per level, ticket, image set and layer, "
            "across seeds",
            collapsed=True,
        )


def build_group_report(
    group: Source,
    *,
    null: Source | None = None,
    progress: Callable[[str], None] | None = None,
) -> str:
    """The across-seed tables and figures of a run group as a self-contained HTML page.

    Parameters
    ----------
    group : RunGroup, sequence of Run, str or Path
        One run per seed of one description (:func:`analysis.seeds.seed_runs`).
    null : RunGroup, sequence of Run, str or Path, optional
        Its random-partition control. Default: the control group found beside
        the group (:func:`analysis.seeds.find_null_control`), if any.
    progress : callable, optional
        Called with the name of each section as it starts.

    Returns
    -------
    str
        A full HTML document: results (mean ± half-width), similarity with the
        null control, collapse curves, fairness gaps and (transformer runs)
        attention entropy, each across seeds.
    """
    from plotly.offline import get_plotlyjs

    from analysis import overview as ov
    from analysis.seeds import find_null_control, seed_runs, seeds_label
    from artifacts.run_format import RunGroup, is_group, load_group

    say = progress or (lambda _: None)
    if isinstance(group, str | Path) and is_group(group):
        group = load_group(group)
    pairs = seed_runs(group)
    first = pairs[0][1]
    name = group.name if isinstance(group, RunGroup) else first.name
    hint = (
        "No random-partition control was found beside this group. Make one with the same preset and "
        "overrides plus data.partition=random and data.null_of = the real partition, e.g. "
        "`python -m lottery sweep --preset P --seeds 0 1 2 --set data.partition=random "
        "--set data.null_of=class --out <folder beside this group>` (embedded sweeps: preset NAME-null)."
    )
    if null is None and isinstance(group, RunGroup):
        found = find_null_control(group)
        null = load_group(found) if found is not None else None
    caps = ov.method_capabilities(first)
    labelled = list(caps.loc[caps["classification"], "method"])
    page = _Page()
    say("results")
    _seed_section_results(page, group, list(first.methods), len(pairs))
    say("similarity")
    _seed_section_similarity(page, group, null, hint)
    say("collapse")
    _seed_section_collapse(page, group, labelled)
    say("fairness")
    _seed_section_fairness(page, group, first, labelled)
    say("attention")
    _seed_section_attention(page, group, first)
    nav = " ".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in page.sections)
    seeds = [s for s, _ in pairs]
    where = html.escape(str(getattr(null, "path", "given")))
    null_text = f" · null control <code>{where}</code>" if null is not None else ""
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime())
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(name)} · across seeds</title><style>{_CSS}</style>"
        f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
        f"<h1>{html.escape(name)}: across seeds</h1>"
        f"<p class='caption'>Routing the Lottery · run group · {seeds_label(len(seeds))} "
        f"({', '.join(map(str, seeds))}){null_text} · generated {stamp}</p><nav>{nav}</nav>"
        + "\n".join(page.parts)
        + "</body></html>\n"
    )


def write_group_report(
    group_dir: str | Path, out: str | Path | None = None, *, null: str | Path | None = None
) -> Path:
    """Write :func:`build_group_report` of the group in ``group_dir`` to ``out``.

    Parameters
    ----------
    group_dir : str or Path
    out : str or Path, optional
        Default: ``<group name>-seeds-report.html`` in the current folder.
    null : str or Path, optional
        Control group folder (default: found beside the group).

    Returns
    -------
    Path
    """
    from artifacts.run_format import load_group

    group = load_group(group_dir)
    out = Path(out) if out is not None else Path(f"{group.name}-seeds-report.html")
    text = build_group_report(group, null=load_group(null) if null is not None else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


def _run_report(args: argparse.Namespace) -> int:
    from artifacts.run_format import is_group

    try:
        if args.group or is_group(args.run):  # a sweep's group: the across-seed report
            path = write_group_report(args.run, args.out, null=args.null)
        else:
            path = write_report(args.run, args.out, level=args.level)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {path}")
    return 0


def add_report_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``report RUN [--out FILE] [--level L]`` on the ``python -m analysis`` parser."""
    p = subparsers.add_parser(
        "report",
        help="write every table and figure of a run into one HTML file",
        description="Write every table and figure of one run into a self-contained HTML file.",
    )
    p.add_argument("run", type=Path, help="run folder (holding manifest.json), or a run group (group.json)")
    p.add_argument(
        "--group",
        action="store_true",
        help="RUN is a run group: write the across-seed report (implied by group.json)",
    )
    p.add_argument(
        "--null",
        type=Path,
        default=None,
        help="random-partition control group (default: found beside the group)",
    )
    p.add_argument(
        "--out", type=Path, default=None, help="HTML file to write (default: ./<run name>-report.html)"
    )
    p.add_argument(
        "--level", type=int, default=None, help="level of the one-sparsity views (default: ~50 %%)"
    )
    p.set_defaults(func=_run_report)
