"""Reconstruction: what INR region tickets draw, and their PSNR per region against sparsity."""

import streamlit as st

from analysis import reconstruction as rec
from analysis.figures.reconstruction import image_panels, psnr_similarity_scatter, psnr_vs_sparsity
from app import data, ui
from app.sidebar import selection

P = "reconstruction"
SCOPES = {"region": "each region", "image": "the whole image"}

sel = selection()
if sel is None:
    st.stop()
st.title("Reconstruction")
run = sel.run
if not data.is_inr_run(sel.path, sel.mtime):
    st.info(
        "This page shows implicit neural representation (INR) runs: one network draws an image from its "
        "pixel coordinates, with one ticket per image region (rtl) or one ticket for all pixels (imp). "
        "Open the embedded run `image-inr-region` in the sidebar, or train one with "
        "`python -m lottery inr --out runs/inr`.",
        icon=":material/info:",
    )
    st.stop()
st.caption(
    "An INR maps a pixel's (row, col), through Fourier features, to its colour. rtl routes every pixel to "
    "its region's ticket of one shared network; imp is one ticket for every pixel, told the region by a "
    "learned embedding. Regions are k-means segments (colour + position), standing in for the paper's "
    "semantic classes. PSNR in dB, images in [0, 1]."
)

methods = data.inr_methods(sel.path, sel.mtime)
c1, c2 = st.columns(2)
image = ui.select(c1.selectbox, "Image", f"{P}.image", list(dict.fromkeys(methods["image"])))
scope = ui.select(c2.radio, "PSNR of", f"{P}.scope", list(SCOPES), format_func=SCOPES.get, horizontal=True)
mine = methods[methods["image"] == image]
by_base = dict(zip(mine["base"], mine["method"], strict=True))
mine_methods = tuple(mine["method"])
table = data.psnr_table(sel.path, sel.mtime, mine_methods)
pictures = data.run_images(sel.path, sel.mtime)[image]

st.subheader(f"{image} at the chosen sparsity")
panels = {"original": pictures["image"]}
for base in rec.BASES:
    method = by_base.get(base)
    if method is None:
        continue
    level = sel.level_for(method)
    row = table[(table["method"] == method) & (table["level"] == level) & (table["scope"] == "image")].iloc[0]
    panels[f"{base} · {ui.percent(row['sparsity'])} · {row['psnr']:.2f} dB"] = data.reconstruction(
        sel.path, sel.mtime, method, level
    )
ui.figure(
    image_panels(panels, regions=pictures["regions"], region_names=pictures["names"]),
    f"{run.name}-{image}-{round(100 * sel.sparsity)}pct-reconstructions",
    key=f"{P}.images",
)

st.subheader("PSNR against sparsity")
shown = table[(table["scope"] == "image") | table["region"].isin(sel.tickets)]
ui.figure(
    psnr_vs_sparsity(
        shown,
        scope=scope,
        paper=rec.PAPER_PSNR if scope == "image" else None,
        title=f"{image}: PSNR of {SCOPES[scope]} (solid rtl, dashed imp)",
    ),
    f"{run.name}-{image}-psnr-vs-sparsity",
    key=f"{P}.curve",
)
if scope == "image":
    st.caption("Crosses: the paper's PSNR on its own image (5-layer MLP, 128 hidden), for orientation only.")

rtl = by_base.get("rtl")
if rtl is not None:
    st.subheader("Does a region's PSNR follow its mask similarity?")
    regions, corr = data.psnr_similarity(sel.path, sel.mtime, sel.sparsity_of(rtl))
    regions, corr = regions[regions["image"] == image], corr[corr["image"] == image]
    c = corr.iloc[0]
    st.caption(
        f"rtl at level {int(c['level'])} ({ui.percent(c['sparsity'])} sparsity): Spearman ρ = {c['rho']:.2f} "
        f"(p = {c['p_value']:.2g}, {int(c['n'])} regions) between a region's PSNR and its ticket's mean "
        "Jaccard to the other regions' tickets. The paper reports about 0.98 on a 15-region image at "
        "50 % sparsity."
    )
    ui.figure(
        psnr_similarity_scatter(regions, corr), f"{run.name}-{image}-psnr-vs-jaccard", key=f"{P}.scatter"
    )

st.subheader("Against the paper")
ui.table(
    data.reconstruction_paper_table(sel.path, sel.mtime),
    f"{run.name}-paper-table",
    key=f"{P}.paper",
    caption="Whole-image PSNR (dB) at the level nearest each target sparsity; `paper`: the paper's figure.",
)
with st.expander("Tables"):
    ui.table(
        table, f"{run.name}-{image}-psnr", key=f"{P}.table", caption="PSNR per region and image, every level."
    )
    ui.table(
        data.region_gaps(sel.path, sel.mtime, mine_methods),
        f"{run.name}-{image}-region-gaps",
        key=f"{P}.gaps",
        caption="Best minus worst region.",
    )
