"""Fairness: per-group metrics at one sparsity, and how pruning widens the gaps."""

import streamlit as st

from analysis.figures.fairness import fairness_gap_figure, group_drop_figure, group_metric_figure
from app import data, seeds, ui
from app.sidebar import selection

P = "fairness"
STATISTICS = {
    "difference": "gap between groups (best - worst), with interval",
    "worst": "worst group's value, with interval",
    "drop_max": "largest drop of a group from the dense model",
    "drop_spread": "spread of the group drops (max - min)",
    "ratio": "ratio worst / best",
}

sel = selection()
if sel is None:
    st.stop()
st.title("Fairness across subgroups")
groups = sel.run.groups()
if not groups:
    st.info(
        f"The run `{sel.run.name}` records no group column (class, cluster, or audit attributes such as "
        "sex and race) in its predictions, so there is nothing to audit. Runs written by "
        "`python -m lottery train` list them in `manifest.json` under `groups`."
    )
    st.stop()

c1, c2, c3 = st.columns([3, 2, 2])
default_group = next((g for g in ("sex", "race", "cluster", "class") if g in groups), groups[0])
group_by = c1.multiselect(
    "Group by",
    groups,
    key=ui.remembered(f"{P}.group_by", [default_group], groups, multi=True),
    help="One column, or several for their intersections (e.g. sex & race).",
)
ui.remember(f"{P}.group_by")
if not group_by:
    st.info("Choose at least one group column.")
    st.stop()
group_by = tuple(g for g in groups if g in group_by)
method = ui.select(
    c2.selectbox, "Method", f"{P}.method", list(sel.methods), default=sel.preferred(list(sel.methods))
)
if method not in data.classification_methods(sel.path, sel.mtime):
    st.info(
        f"`{method}` records no class predictions (label and pred columns) to score per group "
        "(e.g. an implicit neural representation scored by PSNR)."
    )
    st.stop()
ui.remembered(f"{P}.min_count", 30)
min_count = c3.number_input(
    "Small group below",
    min_value=1,
    max_value=10_000,
    step=5,
    key=f"{P}.min_count",
    help="Groups whose metric rests on fewer samples (positives for TPR, negatives for FPR, the "
    "smallest class for balanced accuracy, all samples for accuracy) are flagged (faded bars) and left "
    "out of the gaps.",
)
ui.remember(f"{P}.min_count")

level = sel.level_for(method)
routings = data.prediction_columns(sel.path, sel.mtime, method, level)
metrics = data.fairness_metrics(sel.path, sel.mtime)
c4, c5 = st.columns([3, 2])
metric = ui.select(
    c4.selectbox, "Metric", f"{P}.metric", metrics, default="accuracy" if "accuracy" in metrics else None
)
pred_col = "pred"
if len(routings) > 1:
    pred_col = ui.select(
        c5.selectbox,
        "Predictions",
        f"{P}.pred",
        routings,
        format_func=lambda c: "default routing" if c == "pred" else c.removeprefix("pred_") + " routing",
        help="Which routing's K-way predictions are scored per group.",
    )
table = data.group_table(sel.path, sel.mtime, method, level, group_by, pred_col, int(min_count), metric)

st.subheader(f"Per group at {ui.percent(sel.sparsity_of(method))} sparsity")
left, right = st.columns([3, 2])
with left:
    ui.figure(
        group_metric_figure(table, metric),
        f"{sel.run.name}-{method}-L{level}-{metric}-by-group",
        key=f"{P}.groups",
    )
with right:
    st.caption(
        f"{method}, level {level}: point estimates from fairlearn's MetricFrame. 95 % intervals: Wilson "
        "score intervals for proportions (accuracy, rates), which keep their width at 0 and 1; a bootstrap "
        "over each group's samples for balanced accuracy and macro recall (the `interval` column says "
        "which). "
        "`n_metric` is the number of samples the value rests on."
    )
    small = table[(table["metric"] == metric) & table["small"]]
    if len(small):
        st.warning(
            f"{len(small)} small group(s) (the metric rests on < {int(min_count)} samples; drawn faded, "
            "left out of the gaps): "
            + ", ".join(
                f"{g} (n={n}, {m} counted)"
                for g, n, m in zip(small["group"], small["n"], small["n_metric"], strict=True)
            ),
            icon=":material/group_off:",
        )
    ui.table(
        table[table["metric"] == metric].drop(columns=["group_by", "metric"]),
        f"{sel.run.name}-{method}-L{level}-groups",
        key=f"{P}.group_table",
    )

st.subheader("Against sparsity")
statistic = ui.select(
    st.selectbox, "Statistic", f"{P}.statistic", list(STATISTICS), format_func=STATISTICS.get
)
scored = tuple(m for m in sel.methods if m in data.classification_methods(sel.path, sel.mtime))
gaps = data.fairness_gaps(sel.path, sel.mtime, scored, group_by, int(min_count), metric)
ui.figure(
    fairness_gap_figure(gaps, metric, statistic),
    f"{sel.run.name}-{metric}-{statistic}-vs-sparsity",
    key=f"{P}.gap",
)
st.caption(
    "One line per method; only groups whose metric rests on at least the small-group count enter the "
    "statistic. Error bars: 95 % percentile bootstrap intervals that resample the evaluation samples "
    "jointly, stratified by group (so a gap, or the worst group, is bounded, not only each group's value). "
    "The bootstrap of a max - min gap leans high: judge a change by whether intervals separate. "
    "Hover a point for the group behind it."
)
with st.expander("Gap table"):
    ui.table(gaps, f"{sel.run.name}-fairness-gaps", key=f"{P}.gaps_table", height=240)
group = seeds.across_seeds(sel.path, f"{P}.seeds")
if group is not None:  # the same statistic as mean and 95 % band over the group's seeds
    seeds.fairness_band(group, scored, group_by, int(min_count), metric, statistic, f"{P}.seeds")
if ui.toggle(f"Each group's drop from the dense model ({method})", f"{P}.show_drops"):
    drops = data.group_drops(sel.path, sel.mtime, method, group_by, int(min_count), metric)
    ui.figure(
        group_drop_figure(drops, metric, method),
        f"{sel.run.name}-{method}-{metric}-group-drops",
        key=f"{P}.drops",
    )
    st.caption(
        "Positive = worse than dense; dashed lines: small groups. Error bars: 95 % bootstrap intervals of "
        "each group's drop psi_g, with the same resampled samples at the dense and the pruned level "
        "(a paired difference)."
    )
    ui.table(drops, f"{sel.run.name}-{method}-group-drops", key=f"{P}.drops_table", height=240)
