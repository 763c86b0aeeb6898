"""Attention: how focused each head of a transformer ticket is, and how pruning changes it."""

import streamlit as st

from analysis.figures.attention import attention_entropy_heatmap
from analysis.figures.attention_sweep import attention_entropy_vs_sparsity
from app import data, seeds, ui
from app.sidebar import selection

P = "attention"
VALUES = {"mean_entropy": "normalised entropy", "entropy_change": "difference to the dense model"}

sel = selection()
if sel is None:
    st.stop()
st.title("Attention entropy")
st.caption(
    "For each head, the entropy of its attention rows over the keys, normalised by log(keys): 0 = every "
    "query looks at one token, 1 = uniform attention. The claim that pruned tickets focus their attention "
    "(lower entropy) is tested here, not assumed."
)
c1, c2, c3 = st.columns(3)
method = ui.select(
    c1.selectbox, "Method", f"{P}.method", list(sel.methods), default=sel.preferred(list(sel.methods))
)
status = data.attention_status(sel.path, sel.mtime, method)
if status["reason"] is not None:
    st.info(status["reason"], icon=":material/info:")
    st.stop()
names = list(sel.run.ticket_names(method))
shown = [t for t in names if t in sel.tickets] or names
ticket = ui.select(c2.selectbox, "Ticket", f"{P}.ticket", shown)
value = ui.select(c3.radio, "Show", f"{P}.value", list(VALUES), format_func=VALUES.get)

probed = status["levels"]
target = sel.level_for(method)
level = min(probed, key=lambda lv: (abs(lv - target), lv))
if level != target:
    st.caption(f"Level {target} kept no weights; showing the nearest probed level, {level}.")
chosen = tuple(names.index(t) for t in shown)
result = data.attention(sel.path, sel.mtime, method, chosen)
sweep, summary = result["sweep"], result["summary"]
sets = list(dict.fromkeys(sweep["images"]))
image_set = ui.select(
    st.radio,
    "Probe images",
    f"{P}.images",
    sets,
    horizontal=True,
    help="Each ticket on the probe images of its own subset (the inputs it is routed and trained on), "
    "or on every probe image.",
)
st.markdown(f"**{result['verdict'][image_set]}**")
one = sweep[(sweep["level"] == level) & (sweep["ticket"] == ticket) & (sweep["images"] == image_set)]
sparsity = float(one["sparsity"].iloc[0]) if len(one) else float("nan")
left, right = st.columns(2)
with left:
    st.subheader(f"Layer × head · {ticket} at {ui.percent(sparsity)} sparsity")
    ui.figure(
        attention_entropy_heatmap(one, value),
        f"{sel.run.name}-{method}-L{level}-{ticket}-attention",
        key=f"{P}.heat",
    )
with right:
    st.subheader("Against sparsity")
    layers = list(dict.fromkeys(summary["layer"]))
    layer = ui.select(st.selectbox, "Layer", f"{P}.layer", layers)
    group = seeds.across_seeds(sel.path, f"{P}.seeds")
    if group is not None:  # the same curves as mean and 95 % band over the group's seeds
        seeds.attention_band(group, method, chosen, layer, image_set, f"{P}.seeds")
    else:
        ui.figure(
            attention_entropy_vs_sparsity(summary, layer, images=image_set),
            f"{sel.run.name}-{method}-attention-vs-sparsity",
            key=f"{P}.curve",
        )
        st.caption(
            "Error bars: 95 % Student-t intervals over the probe images (`n_images` in the summary table; "
            "each image's entropy is its mean over heads and query rows)."
        )
with st.expander("Tables"):
    ui.table(one, f"{sel.run.name}-{method}-L{level}-{ticket}-attention", key=f"{P}.table")
    ui.table(summary, f"{sel.run.name}-{method}-attention-summary", key=f"{P}.summary")
    ui.table(result["trend"], f"{sel.run.name}-{method}-attention-trend", key=f"{P}.trend")
