"""The analysis helpers written for the dashboard: chance band, attention sweep, and their figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import find_runs, load_run
from analysis.attention_sweep import (
    ALL_LAYERS,
    attention_level_summary,
    attention_unavailable,
    probe_levels,
)
from analysis.chance import chance_band
from analysis.collapse import collapse_curves
from analysis.figures.attention_sweep import attention_entropy_vs_sparsity
from analysis.figures.overview import results_figure
from analysis.figures.pair import pair_layer_figure, pair_rows, selectable_cells
from analysis.figures.similarity import similarity_heatmap
from analysis.figures.ticket_collapse import ticket_collapse_figure
from analysis.overview import results_table
from analysis.similarity import GLOBAL, chance_jaccard, pair_matrix, similarity_table


@pytest.fixture(scope="module")
def run(synthetic_runs_dir):
    return load_run(synthetic_runs_dir / "multi")


@pytest.fixture(scope="module")
def sim(run):
    return similarity_table(run, "rtl")


# ----------------------------------------------------------------------------- chance band


def test_chance_band_is_the_range_of_pairwise_chance(run, sim):
    band = chance_band(sim)
    assert list(band["level"]) == run.levels("rtl")
    for row in band.itertuples(index=False):
        expected = chance_jaccard(run.masks("rtl", row.level))[np.triu_indices(4, 1)]
        assert row.low == pytest.approx(expected.min())
        assert row.mean == pytest.approx(expected.mean())
        assert row.high == pytest.approx(expected.max())
        assert row.n_pairs == 6


def test_chance_band_of_one_ticket_and_one_layer(run, sim):
    band = chance_band(sim, ticket="s2", layer="fc1.weight")
    assert set(band["n_pairs"]) == {3}
    masks = run.masks("rtl", 3)
    expected = chance_jaccard({"fc1.weight": masks["fc1.weight"]})[2, [0, 1, 3]]
    row = band[band["level"] == 3].iloc[0]
    assert (row["low"], row["high"]) == pytest.approx((expected.min(), expected.max()))
    assert chance_band(sim, ticket="nobody").empty


# ----------------------------------------------------------------------------- attention sweep


def test_mlp_runs_say_why_they_have_no_attention(run):
    reason = attention_unavailable(run, "rtl")
    assert reason and "no attention layers" in reason
    assert probe_levels(run, "rtl") == []  # the synthetic run keeps no weights


def test_attention_level_summary_means_over_heads():
    sweep = pd.DataFrame(
        {
            "level": [0] * 4 + [1] * 4,
            "sparsity": [0.0] * 4 + [0.2] * 4,
            "ticket": ["a"] * 8,
            "layer": ["0", "0", "1", "1"] * 2,
            "head": [0, 1, 0, 1] * 2,
            "mean_entropy": [0.9, 0.7, 0.5, 0.3, 0.8, 0.6, 0.4, 0.2],
            "entropy_change": [0.0] * 4 + [-0.1] * 4,
        }
    )
    s = attention_level_summary(sweep).set_index(["level", "layer"])
    assert s.loc[(0, "0"), "mean_entropy"] == pytest.approx(0.8)
    assert s.loc[(1, "1"), "mean_entropy"] == pytest.approx(0.3)
    assert s.loc[(0, ALL_LAYERS), "mean_entropy"] == pytest.approx(0.6)
    assert s.loc[(1, ALL_LAYERS), "entropy_change"] == pytest.approx(-0.1)
    fig = attention_entropy_vs_sparsity(attention_level_summary(sweep))
    assert len(fig.data) == 1 and list(fig.data[0].y) == pytest.approx([0.6, 0.5])


VIT = [p for p in find_runs("artifacts") if load_run(p).manifest.get("model", {}).get("name") == "vit"]


@pytest.mark.skipif(not VIT, reason="no embedded transformer run")
def test_attention_sweep_of_a_vit_run():
    from analysis.attention_sweep import attention_sweep

    vit = load_run(VIT[0])
    method = vit.methods[0]
    levels = probe_levels(vit, method)[:2]
    sweep = attention_sweep(vit, method, [0], levels)
    model = vit.manifest["model"]
    sets = 2 if len(vit.ticket_names(method)) > 1 else 1  # own subset and all images
    assert len(sweep) == sets * len(levels) * model["depth"] * model["heads"]
    assert sweep["mean_entropy"].between(0, 1).all()
    dense = sweep[sweep["level"] == 0]
    if len(dense):  # the dense level compared with itself changes nothing
        np.testing.assert_allclose(dense["entropy_change"], 0.0, atol=1e-12)


# ----------------------------------------------------------------------------- figures


def test_pair_rows_and_layer_figure(sim):
    a = pair_rows(sim, "s0", "s2", level=2)
    b = pair_rows(sim, "s2", "s0", level=2)
    pd.testing.assert_frame_equal(a, b)
    assert a["layer"].iloc[0] == GLOBAL and a["layer"].iloc[1] == "__layer_mean__" and len(a) == 5
    fig = pair_layer_figure(a, "s0", "s2")
    assert [t.name for t in fig.data] == ["J", "J* (chance-corrected)", "chance E[J]"]
    assert list(fig.data[0].x)[0] == "all layers"
    np.testing.assert_allclose(fig.data[0].y, a["jaccard"])
    with pytest.raises(ValueError):
        pair_rows(sim, "s0", "s2")


def test_selectable_cells_cover_every_off_diagonal_cell(sim):
    matrix = pair_matrix(sim, "jaccard", level=3, tickets=["s0", "s1", "s2", "s3"])
    fig = selectable_cells(similarity_heatmap(matrix), "J")
    cells = fig.data[-1]
    assert len(cells.x) == 12 and all(x != y for x, y in zip(cells.x, cells.y, strict=True))
    for x, y, (z,) in zip(cells.x, cells.y, cells.customdata, strict=True):
        assert z == pytest.approx(matrix.loc[y, x])


def test_ticket_collapse_figure_with_and_without_labels(run, sim):
    curves = collapse_curves(run, ["rtl"]).drop(columns="method")
    labelled = ticket_collapse_figure(
        curves, 1, metric="balanced_accuracy", alarm_sparsity=0.2, collapse_sparsity=0.36
    )
    names = [t.name for t in labelled.data]
    assert names[0].startswith("balanced accuracy") and labelled.data[1].yaxis == "y2"
    ba = curves[(curves["ticket"] == 1) & (curves["signal"] == "balanced_accuracy")].sort_values("sparsity")
    np.testing.assert_allclose(labelled.data[0].y, ba["value"])
    assert len(labelled.layout.shapes) == 2  # alarm and drop
    free = ticket_collapse_figure(
        curves, None, mask_signal="mean_jaccard", metric=None, chance=chance_band(sim), collapse_sparsity=0.36
    )
    assert not any("accuracy" in (t.name or "") for t in free.data)
    assert "yaxis2" not in free.layout or free.layout.yaxis2.overlaying is None
    assert any(t.fill == "tonexty" for t in free.data)  # the chance band
    assert len(free.layout.shapes) == 0  # no labelled drop without labels


def test_results_figure_one_line_per_method(run):
    res = results_table(run)
    fig = results_figure(res, "accuracy", chosen_sparsity=0.3)
    assert [t.name for t in fig.data] == ["imp", "rtl"]
    rtl = res[(res["method"] == "rtl") & (res["metric"] == "accuracy")].sort_values("sparsity")
    np.testing.assert_allclose(fig.data[1].x, rtl["sparsity"])
    np.testing.assert_allclose(fig.data[1].y, rtl["value"])
