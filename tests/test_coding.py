import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.stats import entropy

from analysis.coding import (
    JOINT_COLUMNS,
    TICKET_COLUMNS,
    binary_entropy,
    coding_frame,
    coding_level_summary,
    coding_table,
    joint_coding_frame,
    joint_coding_table,
    joint_entropy_bits,
    pattern_counts,
)
from analysis.figures.coding import (
    coding_cost_bars,
    coding_cost_vs_sparsity,
    joint_coding_vs_sparsity,
)
from analysis.similarity import GLOBAL
from artifacts.run_format import load_run, write_level, write_manifest


def make_run(path, levels, tickets, method="rtl"):
    write_manifest(path, {"name": "test", "methods": {method: {"tickets": list(tickets)}}})
    for level, masks in levels.items():
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.size for m in masks.values())
        write_level(
            path,
            method,
            level,
            masks=masks,
            predictions=pd.DataFrame({"sample": [0]}),
            info={"sparsity": 1.0 - kept / total},
        )
    return load_run(path)


def test_binary_entropy_matches_scipy():
    p = np.array([0.0, 1e-9, 0.01, 0.25, 0.5, 0.8, 1.0])
    expected = [entropy([q, 1 - q], base=2) for q in p]
    np.testing.assert_allclose(binary_entropy(p), expected, rtol=1e-12, atol=1e-15)
    assert binary_entropy(0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        binary_entropy(1.5)


def test_ticket_costs_by_hand():
    # Two tickets over a (4, 8) layer: rows of 8 weights, N = 32.
    m = np.zeros((2, 4, 8), dtype=bool)
    m[0, 0, :3] = True  # 3 kept
    m[1] = True  # 32 kept (dense)
    df = coding_frame({"fc": m}, ["a", "b"])
    assert list(df.columns) == TICKET_COLUMNS
    a = df[(df["ticket"] == "a") & (df["layer"] == "fc")].iloc[0]
    assert (a["n_weights"], a["n_kept"], a["bitmap_bits"]) == (32, 3, 32)
    assert a["density"] == pytest.approx(3 / 32)
    assert a["h2"] == pytest.approx(entropy([3 / 32, 29 / 32], base=2))
    assert a["entropy_bits"] == pytest.approx(32 * a["h2"])
    assert a["index_bits"] == 3 * 5  # ceil(log2 32) = 5
    assert a["csr_bits"] == 3 * 3 + 5 * 2  # column index 3 bits; 5 row pointers of ceil(log2 4) bits
    assert a["dropped_bits_fp32"] == 29 * 32 and a["dropped_bits_fp16"] == 29 * 16
    b = df[(df["ticket"] == "b") & (df["layer"] == "fc")].iloc[0]
    assert b["entropy_bits"] == 0.0 and b["dropped_bits_fp32"] == 0


def test_global_rows_sum_layers():
    rng = np.random.default_rng(0)
    masks = {"conv": rng.random((3, 4, 2, 3, 3)) < 0.3, "fc": rng.random((3, 10, 7)) < 0.6}
    df = coding_frame(masks, ["x", "y", "z"])
    per_layer = df[df["layer"] != GLOBAL].groupby("ticket", sort=False)
    glob = df[df["layer"] == GLOBAL].set_index("ticket")
    for col in ["n_weights", "n_kept", "entropy_bits", "index_bits", "csr_bits", "dropped_bits_fp32"]:
        np.testing.assert_allclose(glob[col], per_layer[col].sum().loc[glob.index])
    np.testing.assert_allclose(glob["h2"], glob["entropy_bits"] / glob["n_weights"])
    # Per-layer coding never costs more than one density for the whole network.
    assert (glob["h2"] <= binary_entropy(glob["density"].to_numpy()) + 1e-12).all()


def test_joint_cost_matches_scipy_entropy_of_patterns():
    rng = np.random.default_rng(1)
    x = rng.random((4, 3000)) < [[0.1], [0.5], [0.3], [0.7]]
    _, counts = np.unique(x, axis=1, return_counts=True)
    assert joint_entropy_bits(x) == pytest.approx(3000 * entropy(counts, base=2))


@pytest.mark.parametrize("k", [3, 9, 70])  # one byte, two bytes, more than 8 bytes per pattern
def test_pattern_counts_against_unique_columns(k):
    rng = np.random.default_rng(k)
    x = rng.random((k, 500)) < 0.5
    x[:, 250:] = x[:, :250]  # repeated patterns
    _, expected = np.unique(x, axis=1, return_counts=True)
    np.testing.assert_array_equal(np.sort(pattern_counts(x)), np.sort(expected))


def test_joint_equals_independent_for_independent_masks():
    rng = np.random.default_rng(2)
    x = rng.random((3, 200_000)) < [[0.1], [0.4], [0.7]]
    row = joint_coding_frame(x).iloc[0]
    assert row["total_correlation_bits"] >= 0
    # Plug-in bias is about (2^K - 1) / (2 ln 2) bits in all: far below 0.1 %.
    assert row["joint_bits"] == pytest.approx(row["independent_bits"], rel=1e-3)


def test_joint_is_cheaper_for_identical_masks():
    rng = np.random.default_rng(3)
    one = rng.random(5000) < 0.2
    x = np.repeat(one[None], 4, axis=0)
    row = joint_coding_frame({"fc": x}).set_index("layer").loc["fc"]
    h = 5000 * binary_entropy(one.mean())
    assert row["joint_bits"] == pytest.approx(h)
    assert row["independent_bits"] == pytest.approx(4 * h)
    assert row["total_correlation_bits"] == pytest.approx(3 * h)
    assert row["n_patterns"] == 2 and row["n_union"] == one.sum()
    assert row["dropped_bits_fp32"] == (5000 - one.sum()) * 32


def test_joint_global_row_sums_layers():
    rng = np.random.default_rng(4)
    masks = {"a": rng.random((3, 50, 4)) < 0.3, "b": rng.random((3, 300)) < 0.6}
    df = joint_coding_frame(masks).set_index("layer")
    assert list(df.reset_index().columns) == JOINT_COLUMNS
    for col in ["n_weights", "n_union", "independent_bits", "joint_bits", "dropped_bits_fp16"]:
        assert df.loc[GLOBAL, col] == pytest.approx(df.loc["a", col] + df.loc["b", col])
    assert df.loc[GLOBAL, "n_tickets"] == 3


def test_run_tables_and_figures(tmp_path):
    rng = np.random.default_rng(5)
    levels = {
        lv: {"conv": rng.random((2, 4, 3, 3)) < d, "fc": rng.random((2, 6, 8)) < d}
        for lv, d in enumerate([1.0, 0.5, 0.2])
    }
    run = make_run(tmp_path / "run", levels, ["a", "b"])
    table = coding_table(run, "rtl")
    assert list(table.columns) == ["level", "sparsity", *TICKET_COLUMNS]
    assert len(table) == 3 * 2 * 3  # levels x tickets x (2 layers + global)
    summary = coding_level_summary(table)
    assert list(summary["level"]) == [0, 1, 2]
    lv2 = table[(table["level"] == 2) & (table["layer"] == GLOBAL)]
    assert summary.iloc[2]["entropy_bits"] == pytest.approx(lv2["entropy_bits"].mean())
    assert summary.iloc[0]["entropy_bits"] == 0.0  # dense masks cost nothing to code
    joint = joint_coding_table(run, "rtl", levels=[1, 2])
    assert list(joint.columns) == ["level", "sparsity", *JOINT_COLUMNS]
    assert set(joint["level"]) == {1, 2}

    bars = coding_cost_bars(table[table["level"] == 2], "a")
    assert isinstance(bars, go.Figure)
    assert len(bars.data) == 6 and all(isinstance(t, go.Bar) for t in bars.data)
    assert list(bars.data[0].x) == ["conv", "fc"]
    lines = coding_cost_vs_sparsity(summary)
    assert len(lines.data) == 6 and all(isinstance(t, go.Scatter) for t in lines.data)
    jfig = joint_coding_vs_sparsity(joint)
    assert len(jfig.data) == 5
    assert list(jfig.data[0].x) == sorted(joint[joint["layer"] == GLOBAL]["sparsity"])


def test_index_bits_use_ceil_log2():
    for n in [1, 2, 3, 8, 9, 1000]:
        m = np.zeros((1, n), dtype=bool)
        m[0, 0] = True
        row = coding_frame(m).iloc[0]
        assert row["index_bits"] == math.ceil(math.log2(n))
