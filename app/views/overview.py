"""Overview: what the run is, the paper-style results table, where the collapse alarm fired."""

import pandas as pd
import streamlit as st

from analysis.figures.overview import metric_label, results_figure
from analysis.overview import nm_structure_table
from app import data, report_button, seeds, ui
from app.sidebar import selection, target_options

P = "overview"

sel = selection()
if sel is None:
    st.stop()

facts = data.run_facts(sel.path, sel.mtime)
run = sel.run
st.title(f"Overview · {run.name}")
desc = facts["describe"].set_index(["section", "item"])["value"]
# Converted from other tools' checkpoints: tickets without a data set, partition or predictions.
imported = ("source", "format") in desc.index
if imported:
    st.caption(
        f"Imported from {desc[('source', 'format')]} checkpoints · "
        f"{desc.get(('model', 'prunable weights'), '?')} prunable weights · "
        f"{len(sel.all_tickets)} ticket(s); no data set or partition recorded, so accuracy is what "
        "the source logged, if anything"
    )
else:
    st.caption(
        f"{desc.get(('data', 'dataset'), '?')} · {desc.get(('model', 'family'), '?')} with "
        f"{desc.get(('model', 'prunable weights'), '?')} prunable weights · "
        f"{desc.get(('partition', 'kind'), '?')} partition into "
        f"{desc.get(('partition', 'subsets (K)'), '?')} subsets"
    )

cols = st.columns(4)
cols[0].metric("Tickets per method (K)", len(sel.all_tickets))
cols[1].metric("Methods", len(run.methods))
cols[2].metric("Levels", int(facts["levels"]["level"].nunique()))
cols[3].metric("Highest sparsity", ui.percent(facts["levels"]["sparsity"].max()))

nm = nm_structure_table(run.manifest)  # imported LLM folders: N:M (e.g. 2:4) per layer and ticket
if not nm.empty:
    with st.expander("N:M structure per layer (imported model folders)"):
        ui.table(nm, f"{run.name}-nm", key=f"{P}.nm", caption="N:M pattern per ticket; empty: none.")

# ----------------------------------------------------------------------------- results
st.subheader("Results")
options = target_options(sel.levels, sel.methods)
paper_targets = sorted({min(options, key=lambda v, t=t: (abs(v - t), v)) for t in (0.25, 0.5, 0.75)})
extra = st.multiselect(
    "Compare with sparsities",
    options,
    key=ui.remembered(f"{P}.targets", paper_targets, options, multi=True),
    format_func=lambda v: f"{100 * v:.0f} %",
    help="The sidebar's target is always included; the default adds the sparsities nearest "
    "25 / 50 / 75 %. Each method is shown at its own level nearest each target.",
)
ui.remember(f"{P}.targets")
targets = tuple(sorted({sel.sparsity, *extra}))
paper = data.paper_table(sel.path, sel.mtime, sel.methods, targets)
ui.table(
    paper,
    f"{run.name}-results",
    key=f"{P}.results",
    caption=(
        "Metrics the source logged (e.g. OpenLTH's test_accuracy), averaged over tickets. "
        if imported
        else "One-vs-rest, averaged over tickets, for every method alike: auroc and average_precision "
        "from the stored scores (no threshold); balanced_accuracy at a threshold chosen on held-out samples "
        "(2-fold cross-fitting on the evaluation split: the runs store no validation predictions); "
        "balanced_accuracy_prior at the class prior. The paper's rows, at each method's own rule: "
        "balanced_accuracy_own, precision, recall (detectors: logit > 0; one ticket for all data: its "
        "argmax lies in the subset; experts: max-score routing). accuracy: K-way under the default "
        "routing; accuracy_<routing> under each routing; accuracy_oracle for one ticket for all data is "
        "its argmax within the true subset's classes (the experts' oracle; _low/_high bound it when the "
        "run does not store it). pooled_recall: oracle-routed detectors, which is recall, not accuracy "
        "(always-firing detectors score 1). "
    )
    + "params_union: weights kept by at least one ticket; params_total: parameters the method stores.",
)
group = seeds.across_seeds(sel.path, f"{P}.seeds")
if group is not None:  # the same rows as mean ± half-width over the group's seeds
    seeds.results_pm(group, sel.methods, paper, f"{P}.seeds_results")

res = data.results(sel.path, sel.mtime)
res = res[res["method"].isin(sel.methods)]
metrics = list(dict.fromkeys(res["metric"]))
metric = ui.select(
    st.selectbox,
    "Metric against sparsity",
    f"{P}.metric",
    metrics,
    default="auroc" if "auroc" in metrics else metrics[0] if metrics else None,
    format_func=metric_label,
)
if metric is None:  # e.g. level.json files that hold only the sparsity
    st.info("The chosen methods record no metric or parameter count at any level.")
else:
    ui.figure(results_figure(res, metric, sel.sparsity), f"{run.name}-{metric}", key=f"{P}.fig")

# ----------------------------------------------------------------------------- collapse alarm
st.subheader("Collapse alarm")
alarm = data.alarm_overview(sel.path, sel.mtime, "balanced_accuracy", 0.05)
alarm = alarm[alarm["method"].isin(sel.methods)]
if alarm.empty and imported:
    st.info(
        "The collapse alarm is scored against a labelled accuracy: these imported tickets carry no "
        "predictions and their source logged no accuracy (an OpenLTH tree's test_accuracy is read when "
        "present). Their mask similarity is on the Similarity page."
    )
elif alarm.empty:
    st.info(
        "The collapse alarm is scored against class predictions; the chosen methods record none "
        "(e.g. an implicit neural representation scored by PSNR). Their mask similarity is on the "
        "Similarity page."
    )
for row in alarm.itertuples(index=False):
    if row.fired:
        text = (
            f"**{row.method}**: the label-free alarm fired at level {row.alarm_level} "
            f"({ui.percent(row.alarm_sparsity)} sparsity; {row.alarm_criteria.replace('+', ', ')})"
        )
    else:
        text = f"**{row.method}**: the label-free alarm did not fire within the sweep"
    what = row.metric.replace("_", " ")
    if pd.notna(row.collapse_level):
        text += (
            f"; {what} dropped by more than 0.05 at level {row.collapse_level} "
            f"({ui.percent(row.collapse_sparsity)}): **{row.outcome.replace('_', ' ')}**"
        )
    else:
        text += f"; {what} never dropped by more than 0.05 (**{row.outcome.replace('_', ' ')}**)"
    if pd.notna(row.sparsity_given_up):
        text += (
            f". Stopping at the alarm gives up {ui.percent(row.sparsity_given_up)} sparsity and loses "
            f"{row.metric_lost:.3f} {what} beyond the margin."
        )
    st.markdown(text)
ui.table(
    alarm,
    f"{run.name}-alarm",
    key=f"{P}.alarm",
    caption="hit: the alarm fired 1-2 levels before the labelled drop; early: sooner (the sparsity "
    "given up is the cost); late: at the drop or after; miss: never fired; false alarm: fired, no drop. "
    "The Collapse page shows the signals behind the alarm, per ticket.",
)

# ----------------------------------------------------------------------------- shared weights
shared = data.overlap(sel.path, sel.mtime)
shared = shared[shared["method"].isin(sel.methods)]
if len(shared):
    with st.expander("Shared weights in joint retraining (tickets per kept weight)"):
        ui.table(
            shared,
            f"{run.name}-overlap",
            key=f"{P}.overlap",
            caption="A weight kept by c tickets moves c times per round of joint retraining: mean c is "
            "how much faster it learns than one ticket's weight (rtl.overlap_scaling=count divides it "
            "out). c=1..K: fraction of the kept weights shared by exactly c tickets.",
        )

# ----------------------------------------------------------------------------- what the run is
st.subheader("The run")
left, right = st.columns([3, 2])
with left:
    ui.table(
        facts["describe"].drop(columns="section"),
        f"{run.name}-description",
        key=f"{P}.describe",
        height=320,
    )
with right:
    if imported:
        st.caption("Imported tickets: no partition into subsets was recorded; the description lists them.")
    else:
        ui.table(
            facts["subsets"],
            f"{run.name}-subsets",
            key=f"{P}.subsets",
            caption="The K subsets: ticket k is trained on subset k and routed its samples (oracle routing).",
            height=320,
        )
ui.table(facts["methods"], f"{run.name}-methods", key=f"{P}.methods")
with st.expander("Sparsity and parameter counts of every level"):
    ui.table(facts["levels"], f"{run.name}-levels", key=f"{P}.levels_table")

st.divider()
report_button.render(sel.path, sel.mtime, run.name, key=f"{P}.report")
