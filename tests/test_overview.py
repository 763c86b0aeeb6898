from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from analysis import load_run
from analysis import overview as ov
from analysis.collapse import collapse_curves, collapse_evaluation


@pytest.fixture(scope="module")
def run(synthetic_runs_dir):
    return load_run(synthetic_runs_dir / "multi")


def test_results_match_sklearn_per_ticket_means(run):
    res = ov.results_table(run, ["rtl"], [2])
    got = res.set_index("metric")["value"]
    pred = run.predictions("rtl", 2)
    k = len(run.ticket_names("rtl"))
    y = [pred["subset"] == t for t in range(k)]
    d = [pred[f"detect_{t}"] for t in range(k)]
    assert got["balanced_accuracy_own"] == pytest.approx(
        np.mean([balanced_accuracy_score(a, b) for a, b in zip(y, d, strict=True)])
    )
    sc = [pred[f"score_{t}"] for t in range(k)]
    assert got["auroc"] == pytest.approx(np.mean([roc_auc_score(a, b) for a, b in zip(y, sc, strict=True)]))
    assert got["precision"] == pytest.approx(
        np.mean([precision_score(a, b) for a, b in zip(y, d, strict=True)])
    )
    assert got["recall"] == pytest.approx(np.mean([recall_score(a, b) for a, b in zip(y, d, strict=True)]))
    assert got["accuracy"] == pytest.approx(accuracy_score(pred["label"], pred["pred"]))
    # oracle-routed detectors: their pooled recall, under its own name
    assert "accuracy_oracle" not in got
    assert got["pooled_recall"] == pytest.approx(accuracy_score(pred["label"], pred["pred_oracle"]))
    info = run.level_info("rtl", 2)
    assert got["params_union"] == info["params_union"] and got["params_total"] == info["params_total"]
    assert set(res["sparsity"]) == {run.sparsity("rtl", 2)}


def test_results_levels_per_method_and_missing_levels(run):
    res = ov.results_table(run, levels={"imp": [0, 99], "rtl": [1, 3]})
    assert sorted(set(zip(res["method"], res["level"], strict=True))) == [("imp", 0), ("rtl", 1), ("rtl", 3)]
    assert ov.results_table(run, levels=[]).empty


def test_paper_table_is_one_row_per_method_and_level(run):
    res = ov.results_table(run, levels=[0, 4])
    paper = ov.paper_table(res)
    assert list(paper["method"]) == ["imp", "imp", "rtl", "rtl"]
    assert list(paper.columns[:11]) == [
        "method",
        "level",
        "sparsity",
        "auroc",
        "average_precision",
        "balanced_accuracy",
        "balanced_accuracy_prior",
        "balanced_accuracy_own",
        "precision",
        "recall",
        "accuracy",
    ]
    # imp has no routing: its routed accuracies are missing, not zero.
    assert paper.loc[paper["method"] == "imp", "accuracy_max_score"].isna().all()
    long = res.set_index(["method", "level", "metric"])["value"]
    for row in paper.itertuples(index=False):
        assert row.balanced_accuracy == long[(row.method, row.level, "balanced_accuracy")]
    assert ov.paper_table(res.iloc[:0]).empty


def test_level_table_reads_level_json(run):
    levels = ov.level_table(run)
    assert len(levels) == sum(len(run.levels(m)) for m in run.methods)
    row = levels[(levels["method"] == "rtl") & (levels["level"] == 3)].iloc[0]
    info = run.level_info("rtl", 3)
    assert row["sparsity"] == info["sparsity"] and row["params_union"] == info["params_union"]
    for _, g in levels.groupby("method"):
        assert g.sort_values("level")["sparsity"].is_monotonic_increasing


def test_closest_and_paper_levels(run):
    sp = {lv: run.sparsity("rtl", lv) for lv in run.levels("rtl")}
    for target in (0.0, 0.27, 0.5, 0.99):
        best = min(sp, key=lambda lv: (abs(sp[lv] - target), lv))
        assert ov.closest_level(run, "rtl", target) == best
    levels = ov.level_table(run)
    got = ov.paper_levels(levels, ["rtl"])
    assert got == sorted({ov.closest_level(run, "rtl", t) for t in (0.25, 0.5, 0.75)})
    assert ov.paper_levels(levels, ["nope"]) == []


def test_describe_and_subsets(run):
    d = ov.describe_run(run).set_index(["section", "item"])["value"]
    assert d[("data", "dataset")] == "synthetic"
    assert d[("partition", "subsets (K)")] == "4"
    assert d[("model", "prunable weights")] == f"{32 * 16 + 16 * 32 + 4 * 16:,}"
    assert d[("data", "group columns")] == "none"
    subsets = ov.subset_table(run)
    counts = run.predictions("imp", 0)["subset"].value_counts()
    assert list(subsets["n_test"]) == [counts[k] for k in range(4)]
    assert list(subsets["classes"]) == ["c0", "c1", "c2", "c3"]
    methods = ov.method_table(run)
    assert list(methods["n_tickets"]) == [1, 4]


def test_alarm_overview_summarises_the_evaluation(run):
    ev = collapse_evaluation(collapse_curves(run))
    summary = ov.alarm_overview(ev)
    assert list(summary["method"]) == ["imp", "rtl"]
    for row in summary.itertuples(index=False):
        mine = ev[ev["method"] == row.method]
        agg = mine[mine["ticket"].isna()].iloc[0]
        assert row.fired == pd.notna(agg["alarm_level"])
        assert row.outcome == agg["outcome"]
        assert row.tickets_hit == int((mine["ticket"].notna() & (mine["outcome"] == "hit")).sum())
    # Oracle: the first level whose mean balanced accuracy is 0.05 below the dense one.
    ba = ov.results_table(run).query("metric == 'balanced_accuracy'")
    for row in summary.itertuples(index=False):
        curve = ba[ba["method"] == row.method].set_index("level")["value"]
        below = [lv for lv in curve.index if lv > 0 and curve[lv] < curve[0] - 0.05]
        assert row.collapse_level == below[0]


def test_alarm_overview_of_a_crafted_evaluation():
    ev = pd.DataFrame(
        {
            "method": ["m"] * 3,
            "ticket": pd.array([0, 1, None], dtype="Int64"),
            "collapse_level": pd.array([3, None, 4], dtype="Int64"),
            "collapse_sparsity": [0.5, np.nan, 0.6],
            "alarm_level": pd.array([2, 2, 2], dtype="Int64"),
            "alarm_sparsity": [0.4, 0.4, 0.4],
            "lead_levels": pd.array([1, None, 2], dtype="Int64"),
            "outcome": ["hit", "false_alarm", "hit"],
            "alarm_criteria": ["jaccard_rise"] * 3,
        }
    )
    row = ov.alarm_overview(ev).iloc[0]
    assert row["fired"] and row["alarm_level"] == 2 and row["collapse_level"] == 4 and row["lead_levels"] == 2
    assert row["tickets_hit"] == 1 and row["tickets_missed"] == 0


def test_results_from_curves_equal_scoring_again(run):
    curves = collapse_curves(run)
    keys = ["method", "level", "metric"]
    direct = ov.results_table(run).sort_values(keys).reset_index(drop=True)
    reused = ov.results_table(run, curves=curves).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(direct, reused)
    # A level missing from the curves is scored from the predictions.
    partial = ov.results_table(run, curves=curves[curves["level"] != 2]).sort_values(keys)
    pd.testing.assert_frame_equal(direct, partial.reset_index(drop=True))


def test_collapse_evaluation_falls_back_per_method(run):
    curves = collapse_curves(run)
    # As for one ticket over input clusters: no detectors, hence no balanced accuracy for imp.
    curves = curves[~((curves["method"] == "imp") & (curves["signal"] == "balanced_accuracy"))]
    ev = ov.collapse_evaluation_by_method(curves)
    used = ev.groupby("method")["metric"].first()
    assert used["imp"] == "accuracy" and used["rtl"] == "balanced_accuracy"
    rtl_alone = collapse_evaluation(curves[curves["method"] == "rtl"])
    pd.testing.assert_frame_equal(
        ev[ev["method"] == "rtl"].drop(columns="metric").reset_index(drop=True), rtl_alone
    )
    summary = ov.alarm_overview(ev)
    assert list(summary["metric"]) == ["accuracy", "balanced_accuracy"]
    assert ov.collapse_evaluation_by_method(curves, metric="nope", fallback="nope2").empty


def test_overlap_table_reads_the_engine_record_and_matches_the_masks(tmp_path):
    import torch
    from conftest import write_synthetic_run

    from analysis.overview import overlap_table
    from artifacts import run_format as rf
    from lottery.overlap import overlap_record

    run_dir = write_synthetic_run(tmp_path / "run", seed=5)
    run = load_run(run_dir)
    for level in run.levels("rtl"):
        masks = run.masks("rtl", level)
        path = rf.level_dir(run_dir, "rtl", level) / rf.LEVEL_JSON
        info = rf.read_json(path)
        info["overlap"] = overlap_record({n: torch.from_numpy(m) for n, m in masks.items()})
        rf.write_json(path, info)
    run = load_run(run_dir)
    table = overlap_table(run)
    assert set(table["method"]) == {"rtl"}  # imp records no overlap
    assert list(table["level"]) == run.levels("rtl")
    for row in table.itertuples(index=False):
        c = np.concatenate([m.sum(axis=0).ravel() for m in run.masks("rtl", row.level).values()])
        kept = c[c > 0]
        assert row.kept == kept.size
        assert row.mean_c == pytest.approx(kept.mean())
        frac = np.bincount(kept, minlength=5)[1:] / kept.size
        got = table.loc[table["level"] == row.level, ["c=1", "c=2", "c=3", "c=4"]]
        np.testing.assert_allclose(got, [frac])
        assert row.overlap_scaling == "none"
