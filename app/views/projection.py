"""Projection: a map of the tickets, and whether mask similarity follows class similarity."""

import streamlit as st

from analysis.figures.projection import alignment_vs_sparsity, ticket_map_scatter
from app import data, seeds, ui
from app.sidebar import selection

P = "projection"
COLOURS = {"ticket": "ticket (subset)", "method": "method", "sparsity": "sparsity", "density": "density"}

sel = selection()
if sel is None:
    st.stop()
st.title("Ticket map and semantic alignment")

c1, c2 = st.columns(2)
scope = ui.select(
    c1.radio,
    "Levels on the map",
    f"{P}.scope",
    ["all", "chosen"],
    format_func={"chosen": "the sidebar's level", "all": "every level (one joint map)"}.get,
    horizontal=True,
)
colour = ui.select(
    c2.radio, "Colour by", f"{P}.colour", list(COLOURS), format_func=COLOURS.get, horizontal=True
)
n_points = sum(len(sel.run.ticket_names(m)) for m in sel.methods)
if scope == "chosen" and n_points < 2:
    st.info("One ticket at one level is a single point: choose more methods or every level.")
    st.stop()
levels = None if scope == "all" else (sel.level,)
data.wait_for_warm_up()
mapped = data.ticket_map(sel.path, sel.mtime, sel.methods, levels)
if mapped["left_out"]:
    st.caption(
        f"Not on this map: {', '.join(mapped['left_out'])} (other layer shapes, so Jaccard distances "
        "to these tickets are undefined)."
    )
table = mapped["table"]
table = table[table["ticket"].isin([*sel.tickets, "all"])]
fig = ticket_map_scatter(
    table,
    color=colour,
    symbol="method" if len(sel.methods) > 1 else None,
    hover=["method", "level", "sparsity", "ticket", "density"],
    title="Tickets laid out by Jaccard distance (UMAP; metric MDS for a handful of points)",
)
fig.update_traces(marker={"size": 11, "line": {"width": 0.5, "color": "white"}})  # readable points
ui.figure(fig, f"{sel.run.name}-ticket-map", key=f"{P}.map")
st.caption(
    "Nearby points share many weights. One map holds every method and level shown, so positions are "
    "comparable across them; the axes carry no units."
)
with st.expander("Map coordinates"):
    ui.table(table, f"{sel.run.name}-ticket-map", key=f"{P}.map_table")

methods = sel.multi_ticket_methods()
if methods:
    st.subheader("Null control")
    seeds.null_for_run(sel.path, methods, f"{P}.null")

st.subheader("Semantic alignment against sparsity")
if not methods:
    others = [m for m in sel.run.methods if m not in sel.methods and len(sel.run.ticket_names(m)) > 1]
    advice = (
        f"choose {' or '.join(f'`{m}`' for m in others)}." if others else "the run has one ticket per method."
    )
    st.info("Alignment compares several tickets' masks with class similarity: " + advice)
    st.stop()
method = ui.select(st.selectbox, "Method", f"{P}.method", methods, default=sel.preferred(methods))
align = data.alignment(sel.path, sel.mtime, method)
if align is None:
    st.info(
        f"No class-similarity reference for the tickets of `{method}` "
        f"({', '.join(sel.run.ticket_names(method))}): the shipped reference covers the ten Fashion-MNIST "
        "classes, so alignment is shown for class tickets of Fashion-MNIST runs."
    )
    st.stop()
ui.figure(alignment_vs_sparsity(align), f"{sel.run.name}-{method}-alignment", key=f"{P}.align")
st.caption(
    "Solid: Spearman correlation between the ticket-by-ticket Jaccard matrix and the class-similarity "
    "matrix (Mantel test), over all layers and per third of the network. Dashed: the partial Mantel "
    "statistic, the same correlation once both matrices are controlled for the pixel-space similarity of "
    "the class centroids. Permutation p-values in the hover box and the table."
)
facts = data.alignment_facts(sel.path, sel.mtime, method)
if facts["disjoint"]:
    st.info(
        f"Left out before the split into thirds: {', '.join(facts['disjoint'])}, whose rows each belong to "
        "one ticket by construction (detector heads): their Jaccard is 0 for every pair, which says "
        "nothing about classes (with them in, deep alignment was undefined at every level).",
        icon=":material/call_split:",
    )
if facts["inputs_rho"] is not None:
    st.markdown(
        f"**Control.** The class hierarchy itself follows the inputs: its Mantel correlation with the "
        f"centroids' pixel-space similarity is rho = {facts['inputs_rho']:.2f} "
        f"(p = {facts['inputs_p']:.3g}). "
        "A raw alignment can therefore only mirror the inputs; the partial statistic is the part that does "
        f"not. {facts['verdict']}"
    )
else:
    st.caption("The run stores no subset centroids: no partial statistic.")
ui.table(align, f"{sel.run.name}-{method}-alignment", key=f"{P}.align_table")
