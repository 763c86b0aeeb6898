"""Per-group metrics and fairness gaps, against sklearn by hand and fairlearn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

from analysis.fairness import (
    _batch_metric,
    fairness_gaps,
    group_drops,
    group_labels,
    group_metrics,
    run_fairness_gaps,
    run_group_drops,
)
from artifacts import run_format as rf


def make_frame(seed: int = 0, n: int = 600, n_classes: int = 3, flip: float = 0.3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 1 - flip, label, rng.integers(0, n_classes, n))
    return pd.DataFrame(
        {
            "label": label,
            "pred": pred,
            "pred_oracle": label,
            "sex": rng.choice(["F", "M"], n),
            "race": rng.choice(["a", "b", "c"], n, p=[0.6, 0.36, 0.04]),
            "class": [f"c{v}" for v in label],
        }
    )


def value(table: pd.DataFrame, group: str, metric: str, col: str = "value") -> float:
    return table[(table["group"] == group) & (table["metric"] == metric)][col].item()


# ----------------------------------------------------------------------------- per-group metrics


def test_group_metrics_match_sklearn_by_hand_and_fairlearn():
    df = make_frame()
    t = group_metrics(df, "race", n_boot=0, min_count=30)
    assert list(t.columns) == [
        "group_by",
        "group",
        "n",
        "n_metric",
        "small",
        "metric",
        "value",
        "ci_low",
        "ci_high",
        "interval",
    ]
    mf = MetricFrame(
        metrics={"accuracy": accuracy_score, "balanced_accuracy": balanced_accuracy_score},
        y_true=df["label"],
        y_pred=df["pred"],
        sensitive_features=df["race"],
    )
    for g, rows in df.groupby("race"):
        assert value(t, g, "accuracy") == pytest.approx(accuracy_score(rows["label"], rows["pred"]))
        assert value(t, g, "balanced_accuracy") == pytest.approx(
            balanced_accuracy_score(rows["label"], rows["pred"])
        )
        assert value(t, g, "recall_macro") == pytest.approx(
            recall_score(rows["label"], rows["pred"], average="macro", zero_division=0)
        )
        assert value(t, g, "accuracy") == pytest.approx(mf.by_group.loc[g, "accuracy"])
        assert value(t, g, "accuracy", "n") == len(rows)
        assert value(t, g, "accuracy", "small") == (len(rows) < 30)
    assert value(t, "c", "accuracy", "small")  # ~24 samples
    assert set(t["metric"]) == {"accuracy", "balanced_accuracy", "recall_macro"}  # 3 classes: not binary


def test_intersections_and_class_groups():
    df = make_frame(1)
    t = group_metrics(df, ["sex", "race"], n_boot=0)
    assert set(t["group_by"]) == {"sex & race"}
    for (s, r), rows in df.groupby(["sex", "race"]):
        assert value(t, f"{s} & {r}", "accuracy") == pytest.approx(
            accuracy_score(rows["label"], rows["pred"])
        )
    assert t.drop_duplicates("group")["n"].sum() == len(df)
    labels = group_labels(df, ("sex", "race"))
    assert labels.name == "sex & race" and labels.iloc[0] == f"{df['sex'].iloc[0]} & {df['race'].iloc[0]}"
    # in a class group, accuracy is that class's recall
    cls = group_metrics(df, "class", n_boot=0)
    rec = recall_score(df["label"], df["pred"], average=None)
    for c in range(3):
        assert value(cls, f"c{c}", "accuracy") == pytest.approx(rec[c])


def test_binary_metrics_against_fairlearn_and_sklearn():
    df = make_frame(2, n_classes=2)
    t = group_metrics(df, "sex", n_boot=0)
    assert {"selection_rate", "true_positive_rate", "false_positive_rate"} <= set(t["metric"])
    for g, rows in df.groupby("sex"):
        y, p = rows["label"].to_numpy(), rows["pred"].to_numpy()
        assert value(t, g, "selection_rate") == pytest.approx((p == 1).mean())
        assert value(t, g, "true_positive_rate") == pytest.approx(recall_score(y, p, pos_label=1))
        assert value(t, g, "false_positive_rate") == pytest.approx(
            ((p == 1) & (y == 0)).sum() / (y == 0).sum()
        )


def test_empty_groups_small_groups_and_no_nan():
    df = make_frame(3)
    df["race"] = pd.Categorical(df["race"], categories=["a", "b", "c", "d"])  # "d" has no sample
    t = group_metrics(df, "race", n_boot=200)
    d = t[t["group"] == "d"]
    assert (d["n"] == 0).all() and d["small"].all() and d["value"].isna().all()
    others = t[t["group"] != "d"]
    assert not others[["value", "ci_low", "ci_high"]].isna().any().any()
    t2 = group_metrics(df.astype({"race": str}), "race", groups=["z"], n_boot=0)
    assert value(t2, "z", "accuracy", "n") == 0
    empty = group_metrics(df.iloc[:0], "sex", groups=["F"], n_boot=50)
    assert len(empty) == 3 and empty["value"].isna().all() and (empty["n"] == 0).all()


def test_one_group_and_single_class_group():
    df = make_frame(4, n=100).assign(site="only")
    t = group_metrics(df, "site", n_boot=100)
    assert value(t, "only", "accuracy") == pytest.approx(accuracy_score(df["label"], df["pred"]))
    b = make_frame(5, n=200, n_classes=2)
    b.loc[b["sex"] == "F", "label"] = 1  # no negative among F: FPR undefined, not 0
    t = group_metrics(b, "sex", n_boot=100)
    assert np.isnan(value(t, "F", "false_positive_rate"))
    assert np.isfinite(value(t, "F", "true_positive_rate"))


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    df = make_frame(6, n=1000)
    a = group_metrics(df, "race", n_boot=300, random_state=1)
    b = group_metrics(df, "race", n_boot=300, random_state=1)
    pd.testing.assert_frame_equal(a, b)
    ok = a.dropna(subset=["value"])
    assert ((ok["ci_low"] <= ok["value"] + 1e-12) & (ok["value"] <= ok["ci_high"] + 1e-12)).all()
    assert (ok["ci_high"] - ok["ci_low"] > 0).all()
    # smaller groups get wider intervals
    width = ok[ok["metric"] == "accuracy"].set_index("group").eval("ci_high - ci_low")
    assert width["c"] > width["a"]
    c = group_metrics(df, "race", n_boot=300, random_state=2)
    assert not np.allclose(a["ci_low"], c["ci_low"])


@pytest.mark.parametrize(
    "name",
    [
        "accuracy",
        "balanced_accuracy",
        "recall_macro",
        "selection_rate",
        "true_positive_rate",
        "false_positive_rate",
    ],
)
def test_vectorised_bootstrap_metric_equals_sklearn_rowwise(name):
    from analysis.fairness import _metric_functions

    rng = np.random.default_rng(7)
    n_classes = 2 if name in ("selection_rate", "true_positive_rate", "false_positive_rate") else 4
    yt = rng.integers(0, n_classes, (25, 12))
    yp = rng.integers(0, n_classes, (25, 12))
    yt[0] = 0  # a row with one true class only
    got = _batch_metric(name, yt, yp, n_classes, pos=1)
    fn = _metric_functions([name], pos_label=1)[name]
    want = np.array([fn(a, b) for a, b in zip(yt, yp, strict=True)], dtype=float)
    np.testing.assert_allclose(got, want, equal_nan=True)


# ----------------------------------------------------------------------------- against sparsity


def levels(seed: int = 8, n_classes: int = 3) -> tuple[dict, dict]:
    base = make_frame(seed, n=800, n_classes=n_classes, flip=0.1)
    rng = np.random.default_rng(seed)
    out = {0: base}
    for lv in (1, 2):
        d = base.copy()
        # pruning hurts the rare race "c" (and "b" a bit) more than "a"
        p_flip = d["race"].map({"a": 0.05, "b": 0.15, "c": 0.4}).to_numpy() * lv
        d["pred"] = np.where(rng.random(len(d)) < p_flip, (d["label"] + 1) % n_classes, d["pred"])
        out[lv] = d
    return out, {0: 0.0, 1: 0.5, 2: 0.75}


def test_group_drops_are_dense_minus_sparse():
    by_level, sp = levels()
    dr = group_drops(by_level, sp, "race", min_count=10)
    assert set(dr["level"]) == {0, 1, 2}
    assert np.allclose(dr[dr["level"] == 0]["drop"], 0.0)
    for lv in (1, 2):
        for g, rows in by_level[lv].groupby("race"):
            dense = by_level[0][by_level[0]["race"] == g]
            r = dr[(dr["level"] == lv) & (dr["group"] == g) & (dr["metric"] == "accuracy")]
            want = accuracy_score(dense["label"], dense["pred"]) - accuracy_score(rows["label"], rows["pred"])
            assert r["drop"].item() == pytest.approx(want)
            assert r["sparsity"].item() == sp[lv]


def test_fairness_gaps_against_fairlearn():
    by_level, sp = levels()
    gaps = fairness_gaps(by_level, sp, "race", min_count=10)
    assert list(gaps.columns) == [
        "level",
        "sparsity",
        "group_by",
        "metric",
        "statistic",
        "value",
        "group",
        "ci_low",
        "ci_high",
    ]
    for lv in (0, 1, 2):
        d = by_level[lv]
        mf = MetricFrame(
            metrics=accuracy_score, y_true=d["label"], y_pred=d["pred"], sensitive_features=d["race"]
        )
        g = gaps[(gaps["level"] == lv) & (gaps["metric"] == "accuracy")].set_index("statistic")
        assert g.loc["difference", "value"] == pytest.approx(mf.difference())
        assert g.loc["ratio", "value"] == pytest.approx(mf.ratio())
        assert g.loc["worst", "group"] == mf.by_group.idxmin()
        assert g.loc["group_max", "value"] == pytest.approx(mf.by_group.max())
    g2 = gaps[(gaps["level"] == 2) & (gaps["metric"] == "accuracy")].set_index("statistic")
    assert g2.loc["drop_max", "group"] == "c"  # the rare group is hurt most, by construction
    dr = group_drops(by_level, sp, "race", min_count=10)
    d2 = dr[(dr["level"] == 2) & (dr["metric"] == "accuracy")]["drop"]
    assert g2.loc["drop_spread", "value"] == pytest.approx(d2.max() - d2.min())
    assert g2.loc["drop_std", "value"] == pytest.approx(d2.std(ddof=0))
    assert not (gaps["metric"] == "demographic_parity").any()  # 3 classes
    assert not gaps["value"].isna().any()


def test_small_groups_are_left_out_of_gaps():
    by_level, sp = levels()
    gaps = fairness_gaps(by_level, sp, "race", min_count=100)  # "c" (~30 samples) is small
    assert "c" not in set(gaps["group"].dropna())
    d = by_level[1][by_level[1]["race"] != "c"]
    mf = MetricFrame(
        metrics=accuracy_score, y_true=d["label"], y_pred=d["pred"], sensitive_features=d["race"]
    )
    got = gaps[(gaps["level"] == 1) & (gaps["metric"] == "accuracy") & (gaps["statistic"] == "difference")]
    assert got["value"].item() == pytest.approx(mf.difference())


def test_binary_parity_gaps_match_fairlearn():
    by_level, sp = levels(9, n_classes=2)
    gaps = fairness_gaps(by_level, sp, "race", min_count=10)
    for lv, d in by_level.items():
        g = gaps[(gaps["level"] == lv) & (gaps["statistic"] == "difference")].set_index("metric")["value"]
        assert g["demographic_parity"] == pytest.approx(
            demographic_parity_difference(d["label"], d["pred"], sensitive_features=d["race"])
        )
        assert g["equalized_odds"] == pytest.approx(
            equalized_odds_difference(d["label"], d["pred"], sensitive_features=d["race"])
        )
    fpr = gaps[(gaps["metric"] == "false_positive_rate") & (gaps["statistic"] == "worst")]
    fmax = gaps[(gaps["metric"] == "false_positive_rate") & (gaps["statistic"] == "group_max")]
    np.testing.assert_allclose(fpr["value"], fmax["value"])  # for FPR, worst is the highest


def test_run_helpers(tmp_path):
    by_level, sp = levels()
    rf.write_manifest(
        tmp_path,
        {
            "methods": {
                "imp": {
                    "tickets": ["all"],
                    "ticket_kind": "single",
                    "routings": ["oracle"],
                    "default_routing": "oracle",
                }
            },
            "groups": ["race"],
        },
    )
    masks = {"w": np.ones((1, 3, 3), bool)}
    for lv, d in by_level.items():
        rf.write_level(tmp_path, "imp", lv, masks=masks, predictions=d, info={"sparsity": sp[lv]})
    run = rf.load_run(tmp_path)
    gaps = run_fairness_gaps(run, "race", min_count=10)
    assert set(gaps["method"]) == {"imp"} and len(gaps) == len(
        fairness_gaps(by_level, sp, "race", min_count=10)
    )
    drops = run_group_drops(run, "race", pred_col="pred_oracle")
    assert np.allclose(drops["value"][drops["metric"] == "accuracy"], 1.0)


# ----------------------------------------------------------------------------- figures


def test_fairness_figures():
    from analysis.figures.fairness import fairness_gap_figure, group_drop_figure, group_metric_figure

    df = make_frame(10)
    t = group_metrics(df, "race", n_boot=100)
    fig = group_metric_figure(t, "accuracy")
    assert isinstance(fig, go.Figure) and len(fig.data) == 1
    assert list(fig.data[0].x) == ["a", "b", "c"] and fig.data[0].error_y.array is not None

    by_level, sp = levels()
    gaps = fairness_gaps(by_level, sp, "race", min_count=10).assign(method="rtl")
    gaps = pd.concat([gaps, gaps.assign(method="imp")])
    fig = fairness_gap_figure(gaps, "accuracy", "difference")
    assert isinstance(fig, go.Figure) and {t.name for t in fig.data} == {"rtl", "imp"}
    assert fig.data[0].error_y.array is not None  # the joint bootstrap interval of the gap
    drops = group_drops(by_level, sp, "race", min_count=10)
    fig = group_drop_figure(drops, "accuracy")
    assert isinstance(fig, go.Figure) and {t.name for t in fig.data} == {"a", "b", "c"}


# ----------------------------------------------------------------------------- intervals on decisions (13.6)


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (3, 66), (1, 3), (40, 100), (0, 1)])
def test_wilson_matches_scipy(k, n):
    from scipy.stats import binomtest

    from analysis.fairness import wilson_interval

    lo, hi = wilson_interval(k, n, 0.95)
    want = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert float(lo) == pytest.approx(want.low, abs=1e-12)
    assert float(hi) == pytest.approx(want.high, abs=1e-12)
    assert float(hi) - float(lo) > 0  # never zero width, not even at 0 / n or n / n


def test_proportion_intervals_do_not_collapse_at_one():
    df = make_frame(11, n=300)
    df["pred"] = df["label"]  # every prediction right: accuracy 1 in every group
    t = group_metrics(df, "race", n_boot=200)
    acc = t[t["metric"] == "accuracy"]
    assert (acc["value"] == 1).all()
    assert (acc["ci_high"] - acc["ci_low"] > 0).all() and (acc["interval"] == "wilson").all()
    bal = t[t["metric"] == "balanced_accuracy"]
    assert (bal["ci_high"] - bal["ci_low"] > 0).all()  # bootstrap degenerate: Wilson fallback
    gaps = fairness_gaps({0: df}, {0: 0.0}, "race", metrics=["accuracy"], min_count=10, n_boot=100)
    worst = gaps[gaps["statistic"] == "worst"].iloc[0]
    assert worst["value"] == 1 and worst["ci_high"] - worst["ci_low"] > 0  # not [1, 1]


def test_small_flags_count_positives_for_tpr_and_negatives_for_fpr():
    rng = np.random.default_rng(12)
    n = 400
    group = np.where(np.arange(n) < 66, "small-pos", "big")
    label = (rng.random(n) < 0.5).astype(int)
    label[:66] = 0
    label[:3] = 1  # 66 samples, 3 positives
    pred = np.where(rng.random(n) < 0.8, label, 1 - label)
    df = pd.DataFrame({"label": label, "pred": pred, "g": group})
    t = group_metrics(df, "g", n_boot=0, min_count=30)
    row = t[(t["group"] == "small-pos") & (t["metric"] == "true_positive_rate")].iloc[0]
    assert row["n"] == 66 and row["n_metric"] == 3 and row["small"]  # old rule: 66 >= 30, not small
    fpr = t[(t["group"] == "small-pos") & (t["metric"] == "false_positive_rate")].iloc[0]
    assert fpr["n_metric"] == 63 and not fpr["small"]
    acc = t[(t["group"] == "small-pos") & (t["metric"] == "accuracy")].iloc[0]
    assert acc["n_metric"] == 66 and not acc["small"]
    # the TPR gap leaves the 3-positive group out; the FPR gap keeps it
    gaps = fairness_gaps({0: df, 1: df}, {0: 0.0, 1: 0.5}, "g", min_count=30, n_boot=0)
    tpr = gaps[(gaps["metric"] == "true_positive_rate") & (gaps["statistic"] == "group_min")]
    assert set(tpr["group"]) == {"big"}
    fprg = gaps[(gaps["metric"] == "false_positive_rate") & (gaps["statistic"] == "difference")]
    assert len(fprg) == 2


def _simulated_levels(rng, rates, sizes):
    """One level's predictions whose per-group accuracy is Bernoulli(rate_g)."""
    g = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    label = rng.integers(0, 3, g.size)
    right = rng.random(g.size) < np.repeat(rates, sizes)
    pred = np.where(right, label, (label + 1) % 3)
    return pd.DataFrame({"sample": np.arange(g.size), "label": label, "pred": pred, "grp": g})


def test_gap_interval_covers_the_true_gap_in_90_percent_of_draws():
    rates, sizes = np.array([0.9, 0.75, 0.6]), [300, 120, 60]
    true_gap, true_worst = rates.max() - rates.min(), rates.min()
    rng = np.random.default_rng(13)
    cover_gap = cover_worst = 0
    n_draws = 80  # each draw costs a fairlearn MetricFrame; 80 keep the test under ~20 s on one core
    for draw in range(n_draws):
        df = _simulated_levels(rng, rates, sizes)
        gaps = fairness_gaps(
            {0: df}, {0: 0.0}, "grp", metrics=["accuracy"], min_count=30, n_boot=200, random_state=draw
        ).set_index("statistic")
        cover_gap += gaps.loc["difference", "ci_low"] <= true_gap <= gaps.loc["difference", "ci_high"]
        cover_worst += gaps.loc["worst", "ci_low"] <= true_worst <= gaps.loc["worst", "ci_high"]
    print(f"coverage gap {cover_gap / n_draws:.3f}, worst {cover_worst / n_draws:.3f}")
    assert cover_gap / n_draws >= 0.9
    assert cover_worst / n_draws >= 0.9


def test_drop_interval_is_paired_and_covers_the_true_drop():
    rng = np.random.default_rng(14)
    sizes = [200, 80]
    covered, n_draws = 0, 30
    for draw in range(n_draws):
        dense = _simulated_levels(rng, np.array([0.9, 0.9]), sizes)
        pruned = dense.copy()
        # pruning flips 20 % of group g1's right answers (true drop 0.18), none of g0's
        flip = (pruned["grp"] == "g1").to_numpy() & (rng.random(len(pruned)) < 0.2)
        pruned.loc[flip & (pruned["pred"] == pruned["label"]).to_numpy(), "pred"] = (pruned["label"] + 1) % 3
        dr = group_drops(
            {0: dense, 1: pruned}, {0: 0.0, 1: 0.5}, "grp", metrics=["accuracy"], random_state=draw
        )
        row = dr[(dr["level"] == 1) & (dr["group"] == "g1")].iloc[0]
        covered += row["drop_ci_low"] <= 0.18 <= row["drop_ci_high"]
        g0 = dr[(dr["level"] == 1) & (dr["group"] == "g0")].iloc[0]
        assert g0["drop"] == 0 and g0["drop_ci_low"] == 0 == g0["drop_ci_high"]  # paired: no change, no width
        lvl0 = dr[dr["level"] == 0]
        assert (lvl0["drop_ci_low"] == 0).all() and (lvl0["drop_ci_high"] == 0).all()
    print(f"coverage drop {covered / n_draws:.3f}")
    assert covered / n_draws >= 0.85


def test_joint_bootstrap_refuses_levels_on_other_samples():
    from analysis.fairness import joint_bootstrap

    df = make_frame(15, n=50).assign(sample=np.arange(50))
    other = df.assign(sample=np.arange(50) + 1)
    with pytest.raises(ValueError, match="same samples"):
        joint_bootstrap({0: df, 1: other}, "sex", "accuracy", n_boot=10)


def test_drops_are_measured_from_the_runs_dense_reference(tmp_path):
    # rtl's jointly retrained level 0 is much worse than the dense model (imp level 0): psi_g reads imp's
    dense = make_frame(0, flip=0.1)
    rtl = {lv: make_frame(0, flip=f) for lv, f in enumerate([0.9, 0.2, 0.4])}
    sp = {0: 0.0, 1: 0.5, 2: 0.75}
    entry = {"tickets": ["all"], "ticket_kind": "single", "routings": ["oracle"], "default_routing": "oracle"}
    rf.write_manifest(
        tmp_path,
        {
            "methods": {"imp": entry, "rtl": entry},
            "groups": ["race"],
            "dense_reference": {"method": "imp", "level": 0},
        },
    )
    masks = {"w": np.ones((1, 3, 3), bool)}
    rf.write_level(tmp_path, "imp", 0, masks=masks, predictions=dense, info={"sparsity": 0.0})
    for lv, d in rtl.items():
        rf.write_level(tmp_path, "rtl", lv, masks=masks, predictions=d, info={"sparsity": sp[lv]})
    run = rf.load_run(tmp_path)
    drops = run_group_drops(run, "race", ["rtl"], min_count=10, n_boot_drop=50)
    assert set(drops["level"]) == {0, 1, 2}  # the reference adds no row
    for lv, d in rtl.items():
        for g, rows in d.groupby("race"):
            ref = dense[dense["race"] == g]
            r = drops[(drops["level"] == lv) & (drops["group"] == g) & (drops["metric"] == "accuracy")]
            want = accuracy_score(ref["label"], ref["pred"]) - accuracy_score(rows["label"], rows["pred"])
            assert r["drop"].item() == pytest.approx(want)
            assert r["drop_ci_low"].item() <= want <= r["drop_ci_high"].item()
    # level 1 is worse than dense: a positive drop (the old reading, rtl level 0, gave a negative one)
    lv1 = drops[(drops["level"] == 1) & (drops["metric"] == "accuracy") & (drops["group"] == "a")]
    assert lv1["drop"].item() > 0.05
    gaps = run_fairness_gaps(run, "race", ["rtl"], min_count=10, n_boot=0)
    want = fairness_gaps(rtl, sp, "race", min_count=10, n_boot=0, dense=dense)
    pd.testing.assert_frame_equal(gaps.drop(columns="method"), want)
    spread = gaps[(gaps["statistic"] == "drop_max") & (gaps["metric"] == "accuracy")]
    assert (spread["value"] > 0).all()


# ----------------------------------------------------------------------------- the stacked fast path

ADULT = Path(__file__).resolve().parents[1] / "artifacts" / "adult-mlp-cluster-sweep" / "seed-0"


def test_group_labels_match_per_element_strings():
    # Oracle: the per-element definition (str of each value, "<NA>" for missing, joined by " & ").
    df = pd.DataFrame(
        {
            "s": pd.array(["x", "y", None, "x"], dtype="str"),
            "cat": pd.Categorical(["p", None, "q", "p"]),
            "f": [1.0, np.nan, 2.5, 1.0],
            "i": pd.array([1, None, 3, 1], dtype="Int64"),
            "o": ["u", 1, 1.0, None],  # 1 and 1.0 hash alike but print differently
        },
        index=[5, 3, 9, 1],
    )

    def by_element(cols: list[str]) -> list[str]:
        return [
            " & ".join("<NA>" if pd.isna(df[c].iloc[i]) else str(df[c].iloc[i]) for c in cols)
            for i in range(len(df))
        ]

    for cols in (["s"], ["cat"], ["f"], ["i"], ["o"], ["s", "cat"], ["f", "i", "o"]):
        got = group_labels(df, cols)
        assert got.tolist() == by_element(cols)
        assert got.name == " & ".join(cols) and got.index.equals(df.index)


@pytest.mark.skipif(not ADULT.is_dir(), reason="embedded adult run not shipped")
@pytest.mark.parametrize("group_by", ["sex", ("sex", "race")])
def test_stacked_levels_equal_fairlearn_level_by_level_on_a_real_run(group_by):
    # One MetricFrame over the stacked levels (level = control feature) must give what
    # fairlearn gives on each level's own samples: per-group values, gaps, DP and EO.
    run = rf.load_run(ADULT)
    lvs = run.levels("imp")[:: max(1, len(run.levels("imp")) // 3)][:3]
    by_level = {lv: run.predictions("imp", lv) for lv in lvs}
    sp = {lv: run.sparsity("imp", lv) for lv in lvs}
    metrics = ["accuracy", "true_positive_rate"]
    gaps = fairness_gaps(by_level, sp, group_by, min_count=30, metrics=metrics, n_boot=0)
    drops = group_drops(by_level, sp, group_by, min_count=30, metrics=metrics, n_boot_drop=0)
    cols = [group_by] if isinstance(group_by, str) else list(group_by)
    for lv, d in by_level.items():
        alone = group_metrics(
            d, group_by, min_count=30, metrics=metrics, n_boot=0, groups=drops["group"].unique()
        )
        mine = drops[drops["level"] == lv].drop(columns=["level", "sparsity", "dense_value", "drop"])
        mine = mine.drop(columns=["drop_ci_low", "drop_ci_high"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone, check_exact=False, rtol=1e-12)
        g = d[cols].astype(str).agg(" & ".join, axis=1)  # per-sample groups, fairlearn on every sample
        big = g.map(g.value_counts()) >= 30
        mf = MetricFrame(metrics=accuracy_score, y_true=d["label"], y_pred=d["pred"], sensitive_features=g)
        keep = alone[(alone["metric"] == "accuracy") & ~alone["small"]]["group"]
        acc = mf.by_group.reindex(keep)
        got = gaps[(gaps["level"] == lv) & (gaps["metric"] == "accuracy")].set_index("statistic")
        assert got.loc["difference", "value"] == pytest.approx(acc.max() - acc.min(), abs=1e-12)
        assert got.loc["worst", "group"] == acc.idxmin()
        par = gaps[(gaps["level"] == lv) & (gaps["statistic"] == "difference")].set_index("metric")["value"]
        kw = {"sensitive_features": g[big]}
        assert par["demographic_parity"] == pytest.approx(
            demographic_parity_difference(d["label"][big], d["pred"][big], **kw), abs=1e-12
        )
        assert par["equalized_odds"] == pytest.approx(
            equalized_odds_difference(d["label"][big], d["pred"][big], **kw), abs=1e-12
        )
