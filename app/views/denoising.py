"""Denoising: SI-SNR improvement per environment against sparsity, and listening examples."""

import streamlit as st

from analysis import denoising as den
from analysis.figures.denoising import sisnri_figure
from app import data, ui
from app.sidebar import selection

P = "denoising"
METRICS = {
    "si_snri": "SI-SNR improvement",
    "si_snr_out": "SI-SNR of the enhanced output",
    "si_snr_in": "SI-SNR of the noisy input",
}
KINDS = {"noisy": "Noisy", "clean": "Clean", "rtl": "RTL", "imp": "IMP", "independent": "Independent"}

sel = selection()
if sel is None:
    st.stop()
st.title("Denoising")
if not data.is_speech_run(sel.path, sel.mtime):
    st.info(
        f"The run `{sel.run.name}` is not a speech-enhancement run. Open `speech-unet-env` (environment "
        "tickets of a U-Net that denoises speech), or train one with `python -m lottery data speech` "
        "and `python -m lottery speech`."
    )
    st.stop()

dataset = sel.run.manifest.get("dataset", {})
st.caption(
    "Held-out mixtures of unseen speakers with unseen noise files at fixed SNRs; SI-SNRi = SI-SNR of the "
    "enhanced output minus SI-SNR of the noisy input. " + str(dataset.get("provenance", ""))
)
metric = ui.select(st.radio, "Metric", f"{P}.metric", list(METRICS), format_func=METRICS.get, horizontal=True)
table = data.denoising_table(sel.path, sel.mtime, sel.methods)
ui.figure(
    sisnri_figure(table, metric, paper=den.PAPER_SISNRI),
    f"{sel.run.name}-{metric}-vs-sparsity",
    key=f"{P}.curves",
)
st.caption(
    "Lines: this run, with 95 % bootstrap intervals over the mixtures. Open circles on the `all` panel: "
    "the paper's SI-SNRi at 25 / 50 / 75 % sparsity (TAU scenes, a larger U-Net; their data, not ours)."
)

st.subheader("Against the paper")
ui.table(
    data.denoising_paper(sel.path, sel.mtime, sel.methods),
    f"{sel.run.name}-paper-sisnri",
    key=f"{P}.paper",
)

st.subheader(f"Listen at {ui.percent(sel.sparsity)} sparsity")
clips = data.listening_examples(sel.path, sel.mtime, tuple(sel.levels_at.items()))
if clips.empty:
    st.info("This run stores no listening examples.")
else:
    kinds = [k for k in KINDS if k in set(clips["kind"])]
    for env, rows in clips.groupby("environment", sort=False):
        st.markdown(f"**{env}**")
        cols = st.columns(len(kinds))
        for col, kind in zip(cols, kinds, strict=True):
            row = rows[rows["kind"] == kind]
            with col:
                if row.empty:
                    st.caption(f"{KINDS[kind]}: no clip stored at this level")
                    continue
                r = row.iloc[0]
                label = KINDS[kind] if kind in ("noisy", "clean") else f"{KINDS[kind]} · level {r['level']}"
                st.caption(label)
                st.audio(r["audio"], sample_rate=int(r["sample_rate"]))
    st.caption("Each clip is peak-normalised; one held-out mixture per environment at 0 dB SNR.")

with st.expander("Table"):
    ui.table(table, f"{sel.run.name}-denoising", key=f"{P}.table")
