"""Similarity: which tickets share weights, at one sparsity and against sparsity."""

import streamlit as st

from analysis.figures.pair import LAYER_LABELS, pair_layer_figure, pair_rows, selectable_cells
from analysis.figures.similarity import similarity_heatmap, similarity_vs_sparsity
from analysis.similarity import GLOBAL, LAYER_MEAN
from app import data, seeds, ui
from app.sidebar import selection

P = "similarity"
MEASURES = {
    "jaccard": "J (Jaccard)",
    "jaccard_star": "J* (chance-corrected)",
    "phi": "phi (correlation)",
}

sel = selection()
if sel is None:
    st.stop()
st.title("Ticket similarity")
methods = sel.multi_ticket_methods()
if not methods:
    others = [m for m in sel.run.methods if m not in sel.methods and len(sel.run.ticket_names(m)) > 1]
    advice = (
        f"Choose {' or '.join(f'`{m}`' for m in others)} in the sidebar."
        if others
        else "This run has no method with several tickets: import several checkpoints together "
        "(a folder, several files, or one file holding a dict of tickets) to compare their masks."
    )
    st.info(
        "Similarity compares the masks of several tickets, but the chosen method(s) "
        f"({', '.join(sel.methods)}) have a single ticket. " + advice
    )
    st.stop()
if len(sel.tickets) < 2:
    st.info("Choose at least two tickets in the sidebar's ticket filter.")
    st.stop()

c1, c2, c3 = st.columns(3)
method = ui.select(c1.selectbox, "Method", f"{P}.method", methods, default=sel.preferred(methods))
measure = ui.select(
    c2.radio, "Measure", f"{P}.measure", list(MEASURES), format_func=MEASURES.get, horizontal=True
)
table = data.similarity(sel.path, sel.mtime, method)
layers = list(dict.fromkeys(table["layer"]))
layer = ui.select(
    c3.selectbox,
    "Layer",
    f"{P}.layer",
    layers,
    format_func=lambda x: LAYER_LABELS.get(x, x),
    help="All layers pools every weight, so the largest layer decides it; the layer mean gives each "
    "layer the same weight.",
)
disjoint = data.disjoint_layers(sel.path, sel.mtime, method)
if disjoint:
    st.info(
        f"Left out of the layer mean and of semantic alignment: {', '.join(disjoint)}. Each ticket of "
        f"`{method}` owns its own output row(s) there (one-vs-rest detector heads), so those rows are "
        "disjoint by construction and their Jaccard is 0 whatever training does. They stay in "
        '"all layers" (the paper\'s pooled measure), where they weigh little.',
        icon=":material/call_split:",
    )
level = sel.level_for(method)
sparsity = sel.sparsity_of(method)
st.caption(
    f"{method} at level {level} ({ui.percent(sparsity)} sparsity). Rows and columns are ordered by "
    "hierarchical clustering, so tickets that share weights sit together; the colour scale spans the "
    "pairs (the diagonal saturates). Click a cell to see that pair layer by layer."
)

with st.spinner("Building the heatmap…"):
    m = data.similarity_matrix(sel.path, sel.mtime, method, level, layer, measure, sel.tickets)
left, right = st.columns([3, 2])
with left:
    fig = similarity_heatmap(
        m["matrix"],
        chance=m["chance"] if measure == "jaccard" else None,
        title=f"{MEASURES[measure]} · {LAYER_LABELS.get(layer, layer)}",
        value_name=measure.replace("jaccard_star", "J*").replace("jaccard", "J"),
        zmin=m["zmin"],
        zmax=m["zmax"],
    )
    fig = selectable_cells(fig, measure.replace("jaccard_star", "J*").replace("jaccard", "J"))
    fig.update_layout(height=540)  # room for ten ticket names on each axis
    event = ui.figure(
        fig,
        f"{sel.run.name}-{method}-L{level}-{measure}",
        key=f"{P}.heatmap",
        on_select="rerun",
        selection_mode="points",
    )
    st.caption(
        f"Chance level (independent random masks of the same per-layer densities): "
        f"E[J] = {m['chance']:.3f} on average over these pairs; J* = 0 at chance, 1 for identical masks."
    )

# The clicked cell, else the pair chosen in the selectbox (keyboard users, tests).
pairs = [(a, b) for a, b in zip(m["pairs"]["ticket_a"], m["pairs"]["ticket_b"], strict=True)]
points = (event.get("selection") or {}).get("points", []) if event else []
clicked = [(str(p["y"]), str(p["x"])) for p in points if str(p.get("x")) != str(p.get("y"))]
with right:
    st.subheader("One pair, per layer")
    if clicked and clicked[0] != st.session_state.get(f"{P}.clicked"):
        # Apply a click once, so the selectbox can still change the pair afterwards.
        st.session_state[f"{P}.clicked"] = clicked[0]
        st.session_state[f"{P}.pair"] = next(
            ((a, b) for a, b in pairs if {a, b} == set(clicked[0])), pairs[0]
        )
    pair = ui.select(st.selectbox, "Pair", f"{P}.pair", pairs, format_func=lambda p: f"{p[0]} × {p[1]}")
    rows = pair_rows(data.similarity(sel.path, sel.mtime, method), pair[0], pair[1], level=level)
    ui.figure(
        pair_layer_figure(rows, *pair),
        f"{sel.run.name}-{method}-L{level}-{pair[0]}-{pair[1]}",
        key=f"{P}.pair",
    )

st.subheader("Similarity against sparsity")
summary = data.similarity_summary(sel.path, sel.mtime, tuple(methods))
group = seeds.across_seeds(sel.path, f"{P}.seeds")
if group is not None:  # mean and 95 % band over the group's seeds, with the null control's band
    seeds.similarity_band(group, methods, layer, measure, MEASURES[measure], f"{P}.seeds")
else:
    ui.figure(
        similarity_vs_sparsity(
            summary, layer=layer, title=f"Mean over ticket pairs · {LAYER_LABELS.get(layer, layer)}"
        ),
        f"{sel.run.name}-similarity-vs-sparsity",
        key=f"{P}.curve",
    )
    seeds.null_for_run(sel.path, methods, f"{P}.null")
here = summary[(summary["method"] == method) & (summary["level"] == level)].set_index("layer")
if {GLOBAL, LAYER_MEAN} <= set(here.index):
    pooled, equal = here.loc[GLOBAL, "jaccard_star"], here.loc[LAYER_MEAN, "jaccard_star"]
    shares = data.layer_shares(sel.path, sel.mtime, method)
    biggest = max(shares, key=shares.get)
    st.caption(
        f"At this level, J* pooled over all weights = {pooled:.3f}; with equal layer weights = {equal:.3f}. "
        f"The pooled value follows `{biggest}`, which holds {shares[biggest]:.0%} of the prunable weights."
    )
with st.expander("Tables"):
    ui.table(
        m["pairs"],
        f"{sel.run.name}-{method}-L{level}-pairs",
        key=f"{P}.pairs",
        caption="Every pair at this level and layer.",
    )
    ui.table(summary[summary["layer"] == layer], f"{sel.run.name}-similarity-by-level", key=f"{P}.summary")
