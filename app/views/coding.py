"""Coding cost: what a ticket's mask costs to store, against what its pruning saves."""

import streamlit as st

from analysis.figures.coding import coding_cost_bars, coding_cost_vs_sparsity, joint_coding_vs_sparsity
from analysis.similarity import GLOBAL
from app import data, ui
from app.sidebar import selection

P = "coding"

sel = selection()
if sel is None:
    st.stop()
st.title("Mask coding cost")
st.caption(
    "A mask of density d costs at best H2(d) bits per weight (entropy bound), 1 bit as a bitmap, more as "
    "index lists; a ticket only compresses if the weights it drops save more than its mask costs."
)
c1, c2, c3 = st.columns(3)
method = ui.select(
    c1.selectbox, "Method", f"{P}.method", list(sel.methods), default=sel.preferred(list(sel.methods))
)
names = list(sel.run.ticket_names(method))
shown = [t for t in names if t in sel.tickets] or names
ticket = ui.select(c2.selectbox, "Ticket", f"{P}.ticket", shown)
log_y = ui.toggle("Logarithmic bits axis", f"{P}.log", default=True)
level = sel.level_for(method)

table = data.coding(sel.path, sel.mtime, method)
at_level = table[table["level"] == level]
st.subheader(f"Per layer at {ui.percent(sel.sparsity_of(method))} sparsity")
ui.figure(
    coding_cost_bars(at_level, ticket, log_y=log_y),
    f"{sel.run.name}-{method}-L{level}-{ticket}-coding",
    key=f"{P}.bars",
)
ui.table(
    at_level[at_level["ticket"].astype(str) == str(ticket)],
    f"{sel.run.name}-{method}-L{level}-{ticket}-coding",
    key=f"{P}.bars_table",
)

st.subheader("Against sparsity")
summary = data.coding_summary(sel.path, sel.mtime, method)
ui.figure(
    coding_cost_vs_sparsity(summary, log_y=log_y),
    f"{sel.run.name}-{method}-coding-vs-sparsity",
    key=f"{P}.curve",
)
if len(names) > 1:
    joint = data.joint_coding(sel.path, sel.mtime, method)
    layers = list(dict.fromkeys(joint["layer"]))
    layer = ui.select(
        st.selectbox,
        "Layer (joint coding)",
        f"{P}.layer",
        layers,
        default=GLOBAL,
        format_func=lambda x: "all layers" if x == GLOBAL else x,
    )
    ui.figure(
        joint_coding_vs_sparsity(joint, layer=layer, log_y=log_y),
        f"{sel.run.name}-{method}-joint-coding",
        key=f"{P}.joint",
    )
    st.caption(
        "Coding the K masks together (one K-bit pattern per weight) saves their total correlation over "
        "coding them one by one: the more the tickets overlap, the larger the saving."
    )
    with st.expander("Joint coding table"):
        ui.table(joint, f"{sel.run.name}-{method}-joint-coding", key=f"{P}.joint_table")
else:
    st.caption(f"`{method}` has one ticket: joint coding of several masks does not apply.")
with st.expander("Mean per-ticket costs per level"):
    ui.table(summary, f"{sel.run.name}-{method}-coding-summary", key=f"{P}.summary")
