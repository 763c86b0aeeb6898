"""Across-seed tables: t intervals against scipy, level alignment, a real 2-seed group, the null control."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from seed_groups import build_smoke_group, description, write_mask_group, write_mask_run

from analysis import overview
from analysis.seeds import (
    SeedAlignmentError,
    across_seeds,
    find_null_control,
    is_null_control,
    null_similarity_table,
    per_seed,
    seed_runs,
    seed_table,
    t_interval,
)
from artifacts import run_format as rf


def _scipy(values: np.ndarray, ci: float = 0.95) -> tuple[float, float, float]:
    v = values[np.isfinite(values)]
    m = v.mean()
    lo, hi = stats.t.interval(ci, len(v) - 1, loc=m, scale=stats.sem(v))
    return m, lo, hi


def test_t_interval_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(0.7, 0.05, size=(20, 5))
    x[3, 1] = np.nan  # a seed without this row
    x[7, :3] = np.nan
    for ci in (0.9, 0.95):
        mean, lo, hi, std, n = t_interval(x, ci)
        for i in range(len(x)):
            m, a, b = _scipy(x[i], ci)
            assert mean[i] == pytest.approx(m) and lo[i] == pytest.approx(a) and hi[i] == pytest.approx(b)
        assert n[3] == 4 and n[7] == 2 and n[0] == 5
        assert std[0] == pytest.approx(np.std(x[0], ddof=1))


def test_one_seed_has_no_interval():
    mean, lo, hi, std, n = t_interval(np.array([[0.4], [np.nan]]))
    assert mean[0] == 0.4 and np.isnan(lo[0]) and np.isnan(hi[0]) and np.isnan(std[0]) and n[0] == 1
    assert np.isnan(mean[1]) and n[1] == 0
    with pytest.raises(ValueError, match="ci"):
        t_interval(np.ones((2, 2)), 1.5)


def _stacked(n_seeds: int, rng) -> pd.DataFrame:
    rows = []
    for seed in range(n_seeds):
        for method in ("imp", "rtl"):
            for level, sp in enumerate((0.0, 0.2, 0.36)):
                for metric in ("accuracy", "balanced_accuracy"):
                    rows.append((seed, method, level, sp, metric, rng.normal(0.8 - level * 0.1, 0.03)))
    return pd.DataFrame(rows, columns=["seed", "method", "level", "sparsity", "metric", "value"])


def test_across_seeds_synthetic_table_against_scipy():
    stacked = _stacked(4, np.random.default_rng(1))
    out = across_seeds(stacked, ["method", "level", "metric"])
    assert len(out) == 2 * 3 * 2
    assert list(out.columns) == [
        "method",
        "level",
        "metric",
        "sparsity",
        "measure",
        "mean",
        "ci_low",
        "ci_high",
        "half_width",
        "std",
        "n_seeds",
        "seeds_label",
    ]
    for _, row in out.iterrows():
        sel = stacked[
            (stacked["method"] == row["method"])
            & (stacked["level"] == row["level"])
            & (stacked["metric"] == row["metric"])
        ]
        m, lo, hi = _scipy(sel["value"].to_numpy())
        assert row["mean"] == pytest.approx(m)
        assert row["ci_low"] == pytest.approx(lo) and row["ci_high"] == pytest.approx(hi)
        assert row["half_width"] == pytest.approx(hi - m)
        assert row["n_seeds"] == 4 and row["seeds_label"] == "4 seeds"
        assert row["sparsity"] == sel["sparsity"].iloc[0]
    assert out["level"].dtype == np.int64


def test_across_seeds_one_seed_is_marked():
    out = across_seeds(_stacked(1, np.random.default_rng(2)), ["method", "level", "metric"])
    assert (out["n_seeds"] == 1).all() and (out["seeds_label"] == "1 seed").all()
    assert out["ci_low"].isna().all() and out["half_width"].isna().all() and out["mean"].notna().all()


def test_across_seeds_keeps_missing_keys_and_counts_present_seeds():
    stacked = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2],
            "level": [1, 1, 1, 1, 1],
            "sparsity": 0.2,
            "ticket": pd.array([pd.NA, 0, pd.NA, 0, pd.NA], dtype="Int64"),
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    out = across_seeds(stacked, ["level", "ticket"])
    agg = out[out["ticket"].isna()].iloc[0]
    assert agg["mean"] == pytest.approx(3.0) and agg["n_seeds"] == 3
    t0 = out[out["ticket"] == 0].iloc[0]
    assert t0["mean"] == pytest.approx(3.0) and t0["n_seeds"] == 2


def test_misaligned_sparsity_is_refused(tmp_path: Path):
    a = rf.load_run(write_mask_run(tmp_path / "a", seed=0, shared=True, fraction=0.3))
    b = rf.load_run(write_mask_run(tmp_path / "b", seed=1, shared=True, fraction=0.5))
    with pytest.raises(SeedAlignmentError, match="do not prune alike at method=rtl, level=1"):
        seed_table([a, b], "similarity")
    with pytest.raises(rf.RunFormatError, match="repeat a seed"):
        seed_runs([a, a])


# ----------------------------------------------------------------------------- a real 2-seed smoke group


@pytest.fixture(scope="module")
def smoke_group(tmp_path_factory) -> Path:
    return build_smoke_group(tmp_path_factory.mktemp("seeds") / "smoke-seeds")


def test_real_group_results_match_per_run_tables(smoke_group: Path):
    group = rf.load_group(smoke_group)
    out = seed_table(group, "results")
    runs = group.runs()
    per_run = [overview.results_table(r) for r in runs]
    assert set(out["n_seeds"]) == {2}
    for _, row in out.sample(12, random_state=0).iterrows():
        vals = np.array(
            [
                t.loc[
                    (t["method"] == row["method"])
                    & (t["level"] == row["level"])
                    & (t["metric"] == row["metric"]),
                    "value",
                ].iloc[0]
                for t in per_run
            ]
        )
        assert row["mean"] == pytest.approx(vals.mean())
        if vals[0] != vals[1]:
            _, lo, hi = _scipy(vals)
            assert row["ci_low"] == pytest.approx(lo) and row["ci_high"] == pytest.approx(hi)
    # the sparsity of a level is the runs' own
    imp = out[(out["method"] == "imp") & (out["metric"] == "accuracy")]
    assert imp["sparsity"].tolist() == pytest.approx([runs[0].sparsity("imp", lv) for lv in imp["level"]])


def test_real_group_similarity_and_collapse(smoke_group: Path):
    sim = seed_table(smoke_group, "similarity")
    assert set(sim["layer"]) == {"__global__", "__layer_mean__"}
    assert {"rtl", "independent"} <= set(sim["method"]) and "imp" not in set(sim["method"])
    j = sim[(sim["measure"] == "jaccard") & (sim["level"] > 0)]
    assert (
        (j["n_seeds"] == 2).all() and (j["ci_low"] <= j["mean"]).all() and (j["mean"] <= j["ci_high"]).all()
    )
    col = seed_table(smoke_group, "collapse", ["rtl"])
    agg = col[col["ticket"].isna() & (col["signal"] == "accuracy")]
    assert len(agg) == 3 and (agg["n_seeds"] == 2).all()
    # a group read as a list of runs gives the same table
    same = seed_table(rf.load_group(smoke_group).runs(), "collapse", ["rtl"])
    pd.testing.assert_frame_equal(col, same)


# ----------------------------------------------------------------------------- the null control


def test_null_control_is_recognised_from_the_manifests(tmp_path: Path):
    real = write_mask_group(tmp_path / "real", shared=True)
    null = write_mask_group(tmp_path / "null", shared=False, partition="random")
    write_mask_group(tmp_path / "other", shared=False, partition="random", fraction=0.5)
    assert is_null_control(rf.load_group(null).manifest, rf.load_group(real).manifest)
    assert not is_null_control(rf.load_group(real).manifest, rf.load_group(null).manifest)
    assert not is_null_control(rf.load_group(tmp_path / "other").manifest, rf.load_group(real).manifest)
    assert find_null_control(real) == null
    assert find_null_control(null) is None
    assert not is_null_control({"description": description("random")}, {"description": description("random")})
    # lottery.presets' "<name>-null": null_of names the real partition; methods and level count may differ
    ctrl = description("random")
    ctrl["data"]["null_of"] = "class"
    ctrl["methods"] = ["independent", "rtl"]
    ctrl["prune"] = {**ctrl["prune"], "levels": 24, "until_collapse": False}
    real_desc = {**description("class"), "probe_size": 64}
    real_desc["prune"] = {**real_desc["prune"], "until_collapse": True, "extra_levels": 2}
    assert is_null_control({"description": ctrl}, {"description": real_desc})
    other = {**ctrl, "data": {**ctrl["data"], "null_of": "kmeans"}}
    assert not is_null_control({"description": other}, {"description": real_desc})
    other_model = {**ctrl, "model": {"name": "vit"}}
    assert not is_null_control({"description": other_model}, {"description": real_desc})


def test_null_similarity_table_separates_shared_structure_from_random_masks(tmp_path: Path):
    real = write_mask_group(tmp_path / "real", shared=True)
    null = write_mask_group(tmp_path / "null", seeds=(0, 1, 2), shared=False, partition="random")
    out = null_similarity_table(real, null)
    assert set(out["layer"]) == {"__global__", "__layer_mean__"}
    assert set(out["measure"]) == {"jaccard", "jaccard_star"}
    pruned = out[out["level"] > 0]
    assert (pruned["real_n_seeds"] == 3).all() and (pruned["null_n_seeds"] == 3).all()
    star = pruned[pruned["measure"] == "jaccard_star"]
    # random masks: J* near 0, its interval covers 0; shared structure: far above, difference excludes 0
    assert (star["null_mean"].abs() < 0.05).all()
    assert ((star["null_ci_low"] < 0.02) & (star["null_ci_high"] > -0.02)).all()
    assert (star["real_mean"] > 0.3).all() and (star["diff_ci_low"] > 0).all()
    assert (pruned["diff_interval"] == "paired t").all()
    # the difference is real minus null, paired by seed
    row = star.iloc[0]
    fn = __import__("analysis.seeds", fromlist=["SEED_TABLES"]).SEED_TABLES["similarity"][0]
    r, n = per_seed(real, fn), per_seed(null, fn)

    def at(t):
        sel = t[(t["level"] == row["level"]) & (t["layer"] == row["layer"])]
        return sel.sort_values("seed")["jaccard_star"].to_numpy()

    d = at(r) - at(n)
    _, lo, hi = _scipy(d)
    assert row["diff_mean"] == pytest.approx(d.mean())
    assert row["diff_ci_low"] == pytest.approx(lo) and row["diff_ci_high"] == pytest.approx(hi)


def test_null_with_other_seeds_uses_welch(tmp_path: Path):
    real = write_mask_group(tmp_path / "real", seeds=(0, 1, 2), shared=True)
    null = write_mask_group(tmp_path / "null", seeds=(5, 6), shared=False, partition="random")
    out = null_similarity_table(real, null)
    row = out[(out["level"] == 2) & (out["measure"] == "jaccard") & (out["layer"] == "__global__")].iloc[0]
    assert row["diff_interval"] == "Welch t"
    fn = __import__("analysis.seeds", fromlist=["SEED_TABLES"]).SEED_TABLES["similarity"][0]
    a = per_seed(real, fn).query("level == 2 and layer == '__global__'")["jaccard"].to_numpy()
    b = per_seed(null, fn).query("level == 2 and layer == '__global__'")["jaccard"].to_numpy()
    res = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = res.confidence_interval(0.95)
    assert row["diff_ci_low"] == pytest.approx(lo) and row["diff_ci_high"] == pytest.approx(hi)


def test_null_of_another_schedule_is_refused(tmp_path: Path):
    real = write_mask_group(tmp_path / "real", shared=True)
    null = write_mask_group(tmp_path / "null", shared=False, partition="random", fraction=0.5)
    with pytest.raises(SeedAlignmentError, match="real and null runs do not prune alike"):
        null_similarity_table(real, null)


# ------------------------------------------------------------------ python -m analysis report on a group


def test_report_on_a_real_group_writes_the_across_seed_tables(smoke_group: Path, tmp_path: Path):
    import subprocess
    import sys

    out = tmp_path / "g.html"
    proc = subprocess.run(
        [sys.executable, "-m", "analysis", "report", str(smoke_group), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert "Results across seeds" in text and "2 seeds (0, 1)" in text
    res = seed_table(smoke_group, "results")
    row = res[(res["method"] == "rtl") & (res["level"] == 2) & (res["metric"] == "accuracy")].iloc[0]
    assert f"{row['mean']:.3f} ± {row['half_width']:.3f}" in text
    assert "No random-partition control was found" in text and "data.partition=random" in text


def test_group_report_shows_the_null_control_found_beside_it(tmp_path: Path):
    from analysis.report import write_group_report

    real = write_mask_group(tmp_path / "real", shared=True)
    write_mask_group(tmp_path / "null", shared=False, partition="random")
    text = write_group_report(real, tmp_path / "r.html").read_text()
    assert "null control <code>" in text and "No random-partition control" not in text
    assert "diff_ci_low" in text and "paired t" in text
    with pytest.raises(rf.RunFormatError):
        write_group_report(tmp_path / "real" / "seed-0", tmp_path / "x.html")


def test_null_compares_the_methods_both_have(tmp_path: Path):
    real = write_mask_group(tmp_path / "real", seeds=(0, 1), shared=True)
    null = write_mask_group(tmp_path / "null", seeds=(0, 1), shared=False, partition="random")
    out = null_similarity_table(real, null, ["rtl", "independent"])  # neither group has independent
    assert set(out["method"]) == {"rtl"} and len(out)
