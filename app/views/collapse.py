"""Collapse: when tickets lose their specialisation, and whether the masks alone warn in time."""

import pandas as pd
import streamlit as st

from analysis.figures.alarm import alarm_evidence_figure
from analysis.figures.collapse import alarm_lead_figure, collapse_curve_figure
from analysis.figures.ticket_collapse import signal_label, ticket_collapse_figure
from app import data, seeds, ui
from app.sidebar import selection

P = "collapse"
MEAN = "mean over tickets"

sel = selection()
if sel is None:
    st.stop()
st.title("Subnetwork collapse")

methods = [m for m in sel.methods if m in data.classification_methods(sel.path, sel.mtime)]
if not methods:
    st.info(
        "Collapse signals pair each ticket's class metrics with its masks, and the chosen methods "
        f"({', '.join(sel.methods)}) record no class predictions (e.g. an implicit neural representation "
        "scored by PSNR). Mask similarity against sparsity is on the Similarity page."
    )
    st.stop()
top = st.columns([2, 2, 3])
method = ui.select(top[0].selectbox, "Method", f"{P}.method", methods, default=sel.preferred(methods))
label_free = ui.toggle(
    "Hide labelled quantities",
    f"{P}.label_free",
    help="For runs without labels: only the masks and unlabelled predictions are shown, "
    "as the alarm sees them.",
)
names = list(sel.run.ticket_names(method)) if len(sel.run.ticket_names(method)) > 1 else list(sel.all_tickets)
options = [MEAN] + [t for t in names if t in sel.tickets]
ticket_name = ui.select(top[1].selectbox, "Ticket", f"{P}.ticket", options)
ticket = None if ticket_name == MEAN else names.index(ticket_name)

with st.spinner("Computing collapse signals for every level…"):
    curves = data.method_curves(sel.path, sel.mtime, method)
    alarm = data.alarm_trace(sel.path, sel.mtime, method)
signals = data.curve_signals(sel.path, sel.mtime, method, ticket)
if not signals["label_free"]:
    # A single shared ticket has no per-subset mask: its mask signals are the aggregate ones.
    st.info(f"`{method}` has one ticket for all subsets: its mask signals are those of the whole method.")
    signals = {**signals, "label_free": data.curve_signals(sel.path, sel.mtime, method, None)["label_free"]}
mask_signal = ui.select(
    top[2].selectbox, "Mask signal (label-free)", f"{P}.mask", signals["label_free"], format_func=signal_label
)

metric = None
margin = 0.05
if not label_free and signals["labelled"]:
    c1, c2 = st.columns([2, 3])
    metric = ui.select(
        c1.selectbox,
        "Labelled metric",
        f"{P}.metric",
        signals["labelled"],
        default="balanced_accuracy" if "balanced_accuracy" in signals["labelled"] else None,
        format_func=signal_label,
    )
    ui.remembered(f"{P}.margin", 0.05)
    margin = c2.slider(
        "Drop that counts as collapse",
        0.01,
        0.30,
        step=0.01,
        key=f"{P}.margin",
        help="The labelled collapse point is the first level where the metric falls this far below "
        "its dense value: the run's dense reference (the dense model trained on all the data, IMP "
        "level 0), or the method's own level 0 in runs that name none.",
    )
    ui.remember(f"{P}.margin")

if alarm["fired"]:
    st.warning(
        f"**Earlier rule** (latent correlation, issue 13): fired for `{method}` at level {alarm['level']} "
        f"({ui.percent(alarm['sparsity'])} sparsity) — criteria: {', '.join(alarm['criteria'])}.",
        icon=":material/notifications_active:",
    )
else:
    st.success(
        f"The earlier rule (latent correlation) did not fire for `{method}` within the sweep.",
        icon=":material/check_circle:",
    )

st.subheader("The frozen label-free alarm")
frozen = data.frozen_alarm(sel.path, sel.mtime, tuple(methods))
rows = frozen["alarm"][frozen["alarm"]["method"] == method]
st.caption(
    f"Rule: **{frozen['rule']}**; for a method without class predictions: {frozen['fallback']}. "
    f"Thresholds chosen on the calibration sweeps {', '.join(frozen['calibration'])} and frozen "
    f"{frozen['created']} (analysis/alarm_params.json). It reads masks and unlabelled predictions only; "
    "the noise is the larger of the signal's band (bootstrap over samples, or the random-mask null) and "
    "its spread across seeds."
)
mine = rows if ticket is None else rows[rows["ticket"] == ticket]
fired = mine[mine["fired"]]
if len(fired):
    first = fired.sort_values("level").iloc[0]
    st.warning(
        f"**Alarm**: fired for `{method}` on {len(fired)} of {len(mine)} ticket(s), first at level "
        f"{int(first['level'])} ({ui.percent(first['sparsity'])} sparsity): {first['signals']}.",
        icon=":material/notifications_active:",
    )
else:
    st.success(
        f"The frozen alarm did not fire for `{method}` within the sweep.", icon=":material/check_circle:"
    )
evidence = data.frozen_alarm_evidence(sel.path, sel.mtime, tuple(methods), method, ticket)
ui.figure(
    alarm_evidence_figure(
        evidence,
        None if fired.empty else float(fired.sort_values("level")["sparsity"].iloc[0]),
        title=f"{method} · {ticket_name}: the alarm's signals, noise bands and thresholds",
    ),
    f"{sel.run.name}-{method}-{ticket_name}-alarm-evidence",
    key=f"{P}.evidence",
)
ui.table(rows.drop(columns=["method"]), f"{sel.run.name}-{method}-frozen-alarm", key=f"{P}.frozen")
if not label_free:
    held = data.alarm_evaluation()
    if len(held):
        with st.expander("How the frozen alarm scores on sweeps it never saw (labelled: the study's)"):
            st.caption(
                "Held-out sweeps (other seeds, architectures, partitions, data), scored with the "
                "bounded-lead rule: hit = fired 1-2 levels before the ticket's labelled collapse. "
                "Regret: sparsity given up by stopping at the alarm, metric lost beyond the margin "
                "when late. Written by scripts/alarm_study.py (analysis/data/alarm_evaluation.csv)."
            )
            ui.table(
                held[held["role"] == "evaluation"].drop(columns=["role"]),
                "alarm-held-out-evaluation",
                key=f"{P}.heldout",
            )

collapse_sparsity = None
if metric is not None:
    points = data.labelled_points(sel.path, sel.mtime, method, metric, margin)
    row = points[points["ticket"].isna()] if ticket is None else points[points["ticket"] == ticket]
    if len(row) and pd.notna(row["collapse_level"].iloc[0]):
        collapse_sparsity = float(row["collapse_sparsity"].iloc[0])

band = None
if mask_signal == "mean_jaccard" and len(sel.run.ticket_names(method)) > 1:
    band = data.chance_band(sel.path, sel.mtime, method, None if ticket is None else ticket_name)
fig = ticket_collapse_figure(
    curves,
    ticket,
    mask_signal=mask_signal,
    metric=metric,
    chance=band,
    alarm_sparsity=alarm["sparsity"],
    collapse_sparsity=collapse_sparsity,
    title=f"{method} · {ticket_name}",
)
ui.figure(fig, f"{sel.run.name}-{method}-{ticket_name}-collapse", key=f"{P}.ticket_fig")
group = seeds.across_seeds(sel.path, f"{P}.seeds")
if group is not None:  # the mean over tickets, as mean and 95 % band over the group's seeds
    seeds.collapse_band(group, method, [s for s in (metric, mask_signal) if s], f"{P}.seeds", signal_label)

if metric is not None:
    st.subheader("Lead time of the alarm, and what stopping at it costs")
    st.caption(
        "Lead = labelled collapse level minus alarm level. An alarm is useful when it fires shortly "
        "before the drop: hit = 1 or 2 levels before it; early = sooner (an alarm that always fires at "
        "level 1 is early, not a hit); late = at the drop or after; miss = never fired; false alarm = "
        "fired and nothing dropped. Regret of stopping at the alarm: sparsity given up (against the last "
        "level before the drop, or the end of the sweep when nothing drops) and the metric lost beyond "
        "the margin when late."
    )
    ev = data.collapse_evaluation(sel.path, sel.mtime, metric, margin)
    ev = ev[ev["method"].isin(sel.methods)]
    ui.table(
        data.alarm_summary(sel.path, sel.mtime, metric, margin, tuple(sel.methods)),
        f"{sel.run.name}-alarm-summary",
        key=f"{P}.summary",
        caption="Outcomes over the tickets and their mean, one row per method; mean lead and regret.",
    )
    ui.figure(alarm_lead_figure(ev), f"{sel.run.name}-alarm-lead", key=f"{P}.lead_fig")
    ev_show = ev.assign(
        ticket=ev["ticket"].map(
            lambda t: MEAN if pd.isna(t) else names[int(t)] if int(t) < len(names) else str(t)
        )
    )
    ui.table(ev_show, f"{sel.run.name}-alarm-lead-times", key=f"{P}.lead")

st.subheader("Every ticket")
shown = [s for s in ([metric] if metric else []) + [mask_signal]]
cols = st.columns(len(shown))
for col, signal in zip(cols, shown, strict=True):
    with col:
        ui.figure(
            collapse_curve_figure(curves, signal, ticket_names=names),
            f"{sel.run.name}-{method}-{signal}-all-tickets",
            key=f"{P}.all.{signal}",
        )
st.caption(
    "The alarm reads only label-free signals: the mean latent correlation of the tickets' masks "
    "(constant across densities when the tickets are equally alike; J* is not, and rises from the "
    "first pruned level to the next in every sweep), empty layers, and the entropy of the label-free "
    "predictions (max-score routing for experts, never the oracle routing). Each change must exceed "
    "its noise: a Student-t threshold on the delete-one-ticket jackknife SE."
)
with st.expander("Alarm trace (label-free, one row per level)"):
    ui.table(alarm["trace"], f"{sel.run.name}-{method}-alarm-trace", key=f"{P}.trace")
