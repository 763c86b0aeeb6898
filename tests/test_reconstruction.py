"""Analysis of INR region tickets: PSNR tables, the paper comparison, PSNR against similarity, the page."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jaccard
from streamlit.testing.v1 import AppTest

from analysis import load_run
from analysis import reconstruction as rec
from analysis.collapse import CollapseAlarm, labelled_collapse_points
from analysis.figures.reconstruction import image_panels, psnr_similarity_scatter, psnr_vs_sparsity
from lottery.inr import INRDescription, train_inr_run

REPO = Path(__file__).resolve().parents[1]
DESC = INRDescription(images=("china", "flower"), size=12, regions=3, rounds=8, batch_size=32, levels=3)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "inr-tiny"
    train_inr_run(DESC, out, keep_weights=False, show_progress=False)
    return load_run(out)


@pytest.fixture(scope="module")
def table(run):
    return rec.psnr_table(run)


def test_psnr_matches_hand_values():
    np.testing.assert_allclose(rec.psnr([0.01, 1e-3, 1.0]), [20.0, 30.0, 0.0])
    assert rec.psnr(65.025, peak=255) == pytest.approx(30.0)
    assert np.isinf(rec.psnr(0.0))
    with pytest.raises(ValueError):
        rec.psnr(-1.0)


def test_image_psnr_is_the_psnr_of_all_its_pixels():
    rng = np.random.default_rng(0)
    sq = rng.uniform(0, 0.02, size=100)  # per-pixel squared errors
    region = rng.integers(0, 4, size=100)
    preds = pd.DataFrame(
        {
            "subset": np.arange(4),
            "image": "a",
            "region": [f"a/{j}" for j in range(4)],
            "n_pixels": np.bincount(region, minlength=4),
            "mse": [sq[region == j].mean() for j in range(4)],
        }
    )
    frame = rec.psnr_frame(preds)
    img = frame[frame["scope"] == "image"].iloc[0]
    assert img["n_pixels"] == 100
    assert img["psnr"] == pytest.approx(10 * np.log10(1 / sq.mean()))
    reg = frame[frame["scope"] == "region"]
    np.testing.assert_allclose(reg["psnr"], [10 * np.log10(1 / sq[region == j].mean()) for j in range(4)])


def test_psnr_table_covers_every_method_level_and_region(run, table):
    assert list(table.columns) == rec.PSNR_COLUMNS
    methods = rec.inr_methods(run)
    assert sorted(methods["method"]) == ["imp-china", "imp-flower", "rtl-china", "rtl-flower"]
    assert set(methods["base"]) == {"rtl", "imp"}
    # 4 methods x 4 levels x (3 regions + 1 image row)
    assert len(table) == 4 * 4 * 4
    one = table[(table["method"] == "rtl-flower") & (table["level"] == 2)]
    assert one.loc[one["scope"] == "region", "n_pixels"].sum() == 144
    stored = run.level_info("rtl-flower", 2)["metrics"]["psnr"]
    assert one.loc[one["scope"] == "image", "psnr"].iloc[0] == pytest.approx(stored)


def test_paper_comparison_picks_the_nearest_level(run, table):
    comp = rec.paper_comparison(table)
    for _, row in comp[comp["image"] != "mean"].iterrows():
        method = f"{row['base']}-{row['image']}"
        sp = {lv: run.sparsity(method, lv) for lv in run.levels(method)}
        best = min(sp, key=lambda lv: (abs(sp[lv] - row["target_sparsity"]), lv))
        assert row["level"] == best
        expected = table[(table["method"] == method) & (table["level"] == best) & (table["scope"] == "image")]
        assert row["psnr"] == pytest.approx(expected["psnr"].iloc[0])
    mean = comp[(comp["image"] == "mean") & (comp["base"] == "rtl") & (comp["target_sparsity"] == 0.5)]
    parts = comp[(comp["image"] != "mean") & (comp["base"] == "rtl") & (comp["target_sparsity"] == 0.5)]
    assert mean["psnr"].iloc[0] == pytest.approx(parts["psnr"].mean())
    assert mean["paper_psnr"].iloc[0] == 17.25
    assert comp.loc[comp["target_sparsity"] == 0.9, "paper_psnr"].isna().all()
    wide = rec.paper_table(comp)
    assert list(wide.columns[:6]) == ["target_sparsity", "base", "china", "flower", "mean", "paper"]
    assert wide.loc[(wide["target_sparsity"] == 0.25) & (wide["base"] == "imp"), "paper"].iloc[0] == 15.94


def test_parameter_counts_and_level_table(run, table):
    comp = rec.with_params(run, rec.paper_comparison(table))
    for _, row in comp[comp["image"] != "mean"].iterrows():
        masks = run.masks(f"{row['base']}-{row['image']}", int(row["level"]))
        assert row["params"] == sum(int(m.any(0).sum()) for m in masks.values())  # union of the tickets
    assert comp.loc[comp["image"] == "mean", "params"].isna().all()
    assert {"params_china", "params_flower"} <= set(rec.paper_table(comp).columns)
    levels = rec.level_table(table)
    assert list(levels.columns) == ["level", "sparsity", *rec.inr_methods(run)["method"]]
    assert levels["level"].tolist() == [0, 1, 2, 3]
    assert levels.loc[2, "rtl-china"] == pytest.approx(run.level_info("rtl-china", 2)["metrics"]["psnr"])


def test_region_similarity_against_scipy_jaccard(run):
    level = 3
    frame = rec.region_similarity(run, "rtl-china", level)
    masks = run.masks("rtl-china", level)
    flat = np.concatenate([m.reshape(m.shape[0], -1) for m in masks.values()], axis=1)  # (K, N)
    k = flat.shape[0]
    for j in range(k):
        oracle = np.mean([1 - jaccard(flat[j], flat[i]) for i in range(k) if i != j])
        assert frame["mean_jaccard"].iloc[j] == pytest.approx(oracle)
    with pytest.raises(ValueError):
        rec.region_similarity(run, "imp-china", level)


def test_psnr_similarity_correlation_is_spearman(run):
    regions, corr = rec.psnr_similarity_correlation(run, sparsity=0.5)
    assert list(corr["image"]) == ["china", "flower"]
    for _, row in corr.iterrows():
        r = regions[regions["image"] == row["image"]]
        assert row["n"] == 3 and row["level"] == 3  # 1 - 0.8^3 = 48.8 % is nearest 50 %
        oracle = r["psnr"].corr(r["mean_jaccard"], method="spearman")  # pandas' own rank correlation
        if np.isfinite(oracle):
            assert row["rho"] == pytest.approx(oracle)


def test_region_gaps_are_best_minus_worst(table):
    gaps = rec.region_gaps(table)
    assert len(gaps) == 16
    g = gaps[(gaps["method"] == "imp-china") & (gaps["level"] == 1)].iloc[0]
    reg = table[(table["method"] == "imp-china") & (table["level"] == 1) & (table["scope"] == "region")]
    assert g["gap"] == pytest.approx(reg["psnr"].max() - reg["psnr"].min())
    assert g["worst_region"] == reg.loc[reg["psnr"].idxmin(), "region"]


def test_collapse_machinery_runs_on_psnr_curves(run):
    curves = rec.reconstruction_curves(run)
    rtl = curves[curves["method"] == "rtl-china"]
    want = {"psnr", "mean_jaccard", "mean_jaccard_star", "mean_latent_corr", "density", "any_empty_layer"}
    assert want <= set(rtl["signal"])
    agg = rtl[(rtl["signal"] == "psnr") & rtl["ticket"].isna()].set_index("level")["value"]
    assert agg[2] == pytest.approx(run.level_info("rtl-china", 2)["metrics"]["psnr"])
    alarm = CollapseAlarm().fit(rtl)
    assert len(alarm.trace_) == 4
    points = labelled_collapse_points(rtl, metric="psnr", margin=1.0)
    assert len(points) == 3 + 1  # each region and the image
    imp = curves[curves["method"] == "imp-china"]
    assert "mean_jaccard" not in set(imp["signal"])


def test_a_run_that_is_not_an_inr_is_refused(run):
    other = load_run(run.path)
    other.manifest = {**other.manifest, "task": None}
    assert not rec.is_inr_run(other)
    with pytest.raises(ValueError, match="not an INR run"):
        rec.inr_methods(other)


def test_command_prints_the_table(run, capsys):
    assert rec.main([str(run.path), "--all-levels"]) == 0
    out = capsys.readouterr().out
    assert "paper" in out and "18.86" in out and "Spearman" in out and "every level" in out
    assert rec.main([str(run.path.parent / "missing")]) == 2


def test_figures(run, table):
    pics = rec.run_images(run)["china"]
    assert pics["names"] == ["china/0", "china/1", "china/2"]
    recon = rec.reconstruction(run, "rtl-china", 1)
    fig = image_panels(
        {"original": pics["image"], "rtl": recon}, regions=pics["regions"], region_names=pics["names"]
    )
    assert [t.type for t in fig.data] == ["image"] * 3
    np.testing.assert_array_equal(np.asarray(fig.data[2].z), recon)
    overlay = np.asarray(fig.data[0].z, dtype=float)
    assert np.abs(overlay - np.round(pics["image"] * 255)).mean() > 1  # the regions are visible
    china = table[table["image"] == "china"]
    assert len(psnr_vs_sparsity(china, scope="region").data) == 2 * 3
    assert len(psnr_vs_sparsity(china, scope="image", paper=rec.PAPER_PSNR).data) == 2 + 2
    regions, corr = rec.psnr_similarity_correlation(run)
    assert len(psnr_similarity_scatter(regions, corr).data) == 2


def test_analysis_does_not_import_streamlit_or_torch():
    code = (
        "import sys, analysis.reconstruction, analysis.figures.reconstruction; "
        "print(sorted(m for m in ('streamlit', 'torch') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []


def test_reconstruction_page_renders(run, monkeypatch):
    monkeypatch.setenv("RTL_RUNS_DIR", str(run.path.parent))
    at = AppTest.from_file(str(REPO / "app" / "streamlit_app.py"), default_timeout=60)
    at.session_state["sidebar.run"] = str(run.path)
    at.run()
    at.switch_page("views/reconstruction.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert [t.value for t in at.title] == ["Reconstruction"]
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert len(charts) == 3  # images, PSNR curve, PSNR against similarity
    assert [d["type"] for d in charts[0]["data"]] == ["image"] * 4  # regions, original, rtl, imp
    at.selectbox(key="reconstruction.image").set_value("flower").run()
    at.radio(key="reconstruction.scope").set_value("image").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "flower" in at.subheader[0].value
