"""Labelled ticket metrics, collapse curves, the label-free alarm and its evaluation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import entropy
from sklearn.metrics import balanced_accuracy_score, precision_score, recall_score

from analysis.collapse import (
    CollapseAlarm,
    alarm_summary,
    collapse_curves,
    collapse_evaluation,
    evaluate_alarm,
    labelled_collapse_points,
    level_signals,
    mask_signals,
    prediction_entropy,
)
from analysis.metrics import ticket_metrics
from artifacts import run_format as rf

# ----------------------------------------------------------------------------- fixtures


def make_predictions(
    rng: np.random.Generator, k: int, n: int = 300, routings=("oracle", "max_score")
) -> pd.DataFrame:
    """Predictions of K class tickets: subset == label, noisy detectors and predictions."""
    label = rng.integers(0, k, n)
    df = pd.DataFrame({"sample": np.arange(n), "label": label, "label_name": [f"c{v}" for v in label]})
    df["subset"] = label
    df["class"] = df["label_name"]
    for r in routings:
        df[f"pred_{r}"] = np.where(rng.random(n) < 0.7, label, rng.integers(0, k, n))
    df["pred"] = df[f"pred_{routings[0]}"]
    for j in range(k):
        score = (label == j) * 0.4 + rng.random(n) * 0.6  # overlapping: imperfect detectors
        df[f"score_{j}"] = score
        df[f"detect_{j}"] = score > 0.5
    return df


def make_masks(rng: np.random.Generator, k: int, density: float, shapes=((6, 5), (4, 6))) -> dict:
    return {f"l{i}.weight": rng.random((k, *s)) < density for i, s in enumerate(shapes)}


def curves_from(
    jstar: np.ndarray,
    metric: np.ndarray,
    *,
    empty: np.ndarray | None = None,
    entropy_: np.ndarray | None = None,
    sparsity: np.ndarray | None = None,
) -> pd.DataFrame:
    """Synthetic one-method curves: J* and a metric per (level, ticket)."""
    n_levels, k = jstar.shape
    sparsity = 1 - 0.8 ** np.arange(n_levels) if sparsity is None else sparsity
    empty = np.zeros(n_levels) if empty is None else empty
    entropy_ = np.full(n_levels, np.log(10)) if entropy_ is None else entropy_
    rows = []
    for lv in range(n_levels):
        for t in range(k):
            rows.append((lv, sparsity[lv], t, "mean_latent_corr", jstar[lv, t]))
            rows.append((lv, sparsity[lv], t, "balanced_accuracy", metric[lv, t]))
        rows.append((lv, sparsity[lv], None, "balanced_accuracy", metric[lv].mean()))
        rows.append((lv, sparsity[lv], None, "mean_latent_corr", np.nanmean(jstar[lv]) if lv else np.nan))
        rows.append((lv, sparsity[lv], None, "any_empty_layer", empty[lv]))
        rows.append((lv, sparsity[lv], None, "pred_entropy", entropy_[lv]))
    df = pd.DataFrame(rows, columns=["level", "sparsity", "ticket", "signal", "value"])
    df["ticket"] = df["ticket"].astype("Int64")
    return df


def u_shaped_jstar(rng, n_levels=9, k=8, turn=4, noise=0.002) -> np.ndarray:
    """J* falling until ``turn`` then rising steeply; level 0 undefined (dense masks)."""
    base = np.array(
        [0.3 - 0.02 * lv if lv <= turn else 0.3 - 0.02 * turn + 0.05 * (lv - turn) for lv in range(n_levels)]
    )
    j = base[:, None] + noise * rng.standard_normal((n_levels, k))
    j[0] = np.nan
    return j


def flat_metric(n_levels=9, k=8, drop_at=None, value=0.8, after=0.5) -> np.ndarray:
    m = np.full((n_levels, k), value)
    if drop_at is not None:
        m[drop_at:] = after
    return m


# ----------------------------------------------------------------------------- labelled metrics


def test_ticket_metrics_match_sklearn_and_hand_counts():
    rng = np.random.default_rng(0)
    df = make_predictions(rng, k=4)
    t = ticket_metrics(df, "detector")
    per = t[t["ticket"].notna()]
    for k in range(4):
        y, d = (df["subset"] == k).to_numpy(), df[f"detect_{k}"].to_numpy()
        tp, fp, fn, tn = (y & d).sum(), (~y & d).sum(), (y & ~d).sum(), (~y & ~d).sum()
        got = per[per["ticket"] == k].set_index("metric")["value"]
        assert got["balanced_accuracy_own"] == pytest.approx((tp / (tp + fn) + tn / (tn + fp)) / 2)
        assert got["balanced_accuracy_own"] == pytest.approx(balanced_accuracy_score(y, d))
        assert got["precision"] == pytest.approx(tp / (tp + fp))
        assert got["recall"] == pytest.approx(recall_score(y, d))
        assert (per[per["ticket"] == k]["n"] == y.sum()).all()
    agg = t[t["ticket"].isna()].set_index("metric")["value"]
    for m in ("balanced_accuracy", "balanced_accuracy_own", "auroc"):
        assert agg[m] == pytest.approx(per[per["metric"] == m]["value"].mean())
    # oracle-routed detectors count their pooled recall: named so, never an accuracy
    assert "accuracy_oracle" not in agg
    own = np.any([(df["subset"] == j) & df[f"detect_{j}"] for j in range(4)], axis=0)
    assert agg["pooled_recall"] == pytest.approx(own.mean())
    assert agg["accuracy_max_score"] == pytest.approx((df["pred_max_score"] == df["label"]).mean())
    assert "accuracy" not in ticket_metrics(df, "detector", default_routing="oracle")["metric"].to_numpy()
    assert not any(m.startswith("subset_accuracy") for m in t["metric"])  # detectors: trivial, left out
    assert not t["value"].isna().any()


def test_ticket_metrics_expert_subset_accuracy():
    rng = np.random.default_rng(1)
    df = make_predictions(rng, k=3)
    t = ticket_metrics(df, "expert")
    for k in range(3):
        rows = df[df["subset"] == k]
        got = t[(t["ticket"] == k) & (t["metric"] == "subset_accuracy_oracle")]["value"].item()
        assert got == pytest.approx((rows["pred_oracle"] == rows["label"]).mean())
    mean = t[t["ticket"].isna() & (t["metric"] == "subset_accuracy_oracle")]["value"].item()
    per = [(df[df.subset == k].pred_oracle == df[df.subset == k].label).mean() for k in range(3)]
    assert mean == pytest.approx(np.mean(per))


def test_ticket_metrics_edge_cases_k1_silent_ticket_and_absent_subset():
    rng = np.random.default_rng(2)
    df = make_predictions(rng, k=1, n=50)
    t = ticket_metrics(df, "single")
    # one subset: every sample is positive, so AUROC and the held-out threshold are undefined
    undefined = t["metric"].isin(["auroc", "balanced_accuracy"])
    assert t.loc[undefined, "value"].isna().all() and not t.loc[~undefined, "value"].isna().any()
    got = t[(t["ticket"] == 0)].set_index("metric")["value"]
    y, d = np.ones(50, bool), df["detect_0"].to_numpy()
    assert got["recall"] == pytest.approx(recall_score(y, d))

    df = make_predictions(rng, k=3)
    df["detect_1"] = False  # a ticket that never fires: precision 0 by convention
    df = df[df["subset"] != 2]  # subset 2 absent from the split
    t = ticket_metrics(df, "expert")
    p1 = t[(t["ticket"] == 1) & (t["metric"] == "precision")]["value"].item()
    assert p1 == 0.0 == precision_score(df["subset"] == 1, df["detect_1"], zero_division=0)
    r2 = t[(t["ticket"] == 2) & (t["metric"] == "recall")]
    assert r2["n"].item() == 0 and np.isnan(r2["value"].item())
    mean_r = t[t["ticket"].isna() & (t["metric"] == "recall")]["value"].item()
    assert mean_r == pytest.approx(t[t["ticket"].isin([0, 1]) & (t["metric"] == "recall")]["value"].mean())
    with pytest.raises(ValueError):
        ticket_metrics(df, "router")


# ----------------------------------------------------------------------------- one level's signals


def test_mask_signals_against_numpy():
    rng = np.random.default_rng(3)
    masks = make_masks(rng, 3, 0.5)
    masks["l1.weight"][1] = False  # ticket 1 loses a whole layer
    s = mask_signals(masks)
    flat = np.concatenate([m.reshape(3, -1) for m in masks.values()], axis=1)
    agg = s[s["ticket"].isna()].set_index("signal")["value"]
    assert agg["union_size"] == flat.any(0).sum()
    assert agg["intersection_size"] == flat.all(0).sum()
    assert agg["core_fraction"] == pytest.approx(flat.all(0).sum() / flat.any(0).sum())
    assert agg["union_fraction"] == pytest.approx(flat.any(0).mean())
    assert agg["any_empty_layer"] == 1.0
    per = s[s["ticket"].notna()].pivot(index="ticket", columns="signal", values="value")
    np.testing.assert_allclose(per["density"], flat.mean(1))
    np.testing.assert_array_equal(per["empty_layers"], [0, 1, 0])
    assert per.loc[1, "min_layer_density"] == 0.0

    one = mask_signals({"w": np.ones((1, 4, 4), bool)})
    a1 = one[one["ticket"].isna()].set_index("signal")["value"]
    assert a1["core_fraction"] == 1.0 and a1["any_empty_layer"] == 0.0
    none = mask_signals({"w": np.zeros((2, 3), bool)})
    assert none[none["signal"] == "core_fraction"]["value"].item() == 1.0  # empty union: J convention


def test_prediction_entropy_matches_scipy():
    pred = np.array([0, 0, 1, 2, 2, 2, 5])
    assert prediction_entropy(pred) == pytest.approx(entropy(np.bincount(pred)[np.bincount(pred) > 0]))
    assert prediction_entropy(np.zeros(10, int)) == 0.0
    assert prediction_entropy(np.arange(8)) == pytest.approx(np.log(8))


def test_level_signals_jaccard_matches_scipy():
    rng = np.random.default_rng(4)
    k = 4
    masks = make_masks(rng, k, 0.4)
    df = make_predictions(rng, k)
    s = level_signals(masks, df, "detector")
    flat = np.concatenate([m.reshape(k, -1) for m in masks.values()], axis=1)
    j = 1 - squareform(pdist(flat, "jaccard"))
    mean_j = (j.sum(1) - 1) / (k - 1)
    got = s[(s["signal"] == "mean_jaccard") & s["ticket"].notna()].sort_values("ticket")["value"]
    np.testing.assert_allclose(got, mean_j)
    agg = s[s["ticket"].isna()].set_index("signal")["value"]
    assert agg["mean_jaccard"] == pytest.approx(mean_j.mean())
    # J* is positive for identical masks and near 0 for independent ones
    assert np.isfinite(agg["mean_jaccard_star"]) and abs(agg["mean_jaccard_star"]) < 0.3
    same = {n: np.repeat(m[:1], k, axis=0) for n, m in masks.items()}
    s2 = level_signals(same, df, "detector")
    assert s2[(s2["signal"] == "mean_jaccard_star") & s2["ticket"].isna()]["value"].item() == pytest.approx(
        1.0
    )
    assert {"balanced_accuracy", "pred_entropy", "union_size", "pooled_recall"} <= set(s["signal"])


# ----------------------------------------------------------------------------- run-level curves


def write_run(path, *, k=3, n_levels=4, single=True):
    rng = np.random.default_rng(5)
    methods = {
        "rtl": {
            "tickets": [f"c{i}" for i in range(k)],
            "ticket_kind": "detector",
            "routings": ["oracle", "max_score"],
            "default_routing": "oracle",
        },
    }
    if single:
        methods["imp"] = {
            "tickets": ["all"],
            "ticket_kind": "single",
            "routings": ["oracle", "max_score"],
            "default_routing": "oracle",
        }
    rf.write_manifest(path, {"name": "toy", "methods": methods, "groups": ["class"]})
    for method, entry in methods.items():
        kk = len(entry["tickets"])
        for lv in range(n_levels):
            density = 0.8**lv
            masks = {n: m for n, m in make_masks(rng, kk, density).items()}
            if lv == 0:
                masks = {n: np.ones_like(m) for n, m in masks.items()}
            rf.write_level(
                path,
                method,
                lv,
                masks=masks,
                predictions=make_predictions(rng, k),
                info={"sparsity": 1 - density},
            )
    return rf.load_run(path)


def test_collapse_curves_on_a_run(tmp_path):
    run = write_run(tmp_path / "run")
    curves = collapse_curves(run)
    assert list(curves.columns) == ["method", "level", "sparsity", "ticket", "signal", "value"]
    assert set(curves["method"]) == {"rtl", "imp"}
    assert sorted(curves["level"].unique()) == [0, 1, 2, 3]
    rtl = curves[curves["method"] == "rtl"]
    jstar0 = rtl[(rtl["level"] == 0) & (rtl["signal"] == "mean_jaccard_star")]["value"]
    assert jstar0.isna().all()  # full masks: J* undefined
    assert rtl[(rtl["level"] > 0) & (rtl["signal"] == "mean_jaccard_star")]["value"].notna().all()
    imp = curves[curves["method"] == "imp"]
    assert not (imp["signal"] == "mean_jaccard").any()  # one ticket: nothing to compare with
    assert imp[(imp["signal"] == "density")]["ticket"].isna().all()
    assert imp[imp["signal"] == "balanced_accuracy"]["ticket"].notna().any()  # per subset
    some = collapse_curves(run, ["rtl"], [1, 3, 99])
    assert sorted(some["level"].unique()) == [1, 3] and set(some["method"]) == {"rtl"}
    pd.testing.assert_frame_equal(
        some.reset_index(drop=True),
        curves[(curves["method"] == "rtl") & curves["level"].isin([1, 3])].reset_index(drop=True),
    )
    assert collapse_curves(run, levels={"imp": [2]})["method"].unique().tolist() == ["imp"]
    assert collapse_curves(run, levels=[]).empty
    ev = collapse_evaluation(curves, alarm=CollapseAlarm())
    assert set(ev["method"]) == {"rtl", "imp"}
    assert set(ev["outcome"]) <= {"hit", "early", "late", "miss", "false_alarm", "true_negative"}
    assert {"sparsity_given_up", "metric_lost"} <= set(ev.columns)


# ----------------------------------------------------------------------------- the alarm


def test_alarm_fires_on_rise_before_drop_with_positive_lead():
    rng = np.random.default_rng(6)
    jstar = u_shaped_jstar(rng, turn=4)
    curves = curves_from(jstar, flat_metric(drop_at=7))
    alarm = CollapseAlarm().fit(curves)
    # level 5 is the first above the running minimum (level 4) by far more than 3 SE
    assert alarm.fired_ and alarm.level_ == 5 and alarm.criteria_ == ("overlap_rise",)
    assert alarm.sparsity_ == pytest.approx(1 - 0.8**5)
    tr = alarm.trace_.set_index("level")
    assert not tr.loc[:4, "overlap_rise"].any()
    assert tr.loc[5, "running_min"] == pytest.approx(np.mean(jstar[4]))
    assert tr.loc[5, "rise"] > tr.loc[5, "threshold"] > 0

    points = labelled_collapse_points(curves, margin=0.05)
    ev = evaluate_alarm(points, alarm.level_, alarm.sparsity_)
    assert (ev["collapse_level"] == 7).all()
    assert (ev["lead_levels"] == 2).all()
    np.testing.assert_allclose(ev["lead_sparsity"], (1 - 0.8**7) - (1 - 0.8**5))
    assert (ev["outcome"] == "hit").all()
    assert (ev["lead_sparsity"] > 0).all()


def test_alarm_is_deterministic_and_respects_alpha():
    rng = np.random.default_rng(7)
    jstar = u_shaped_jstar(rng, noise=0.03)
    curves = curves_from(jstar, flat_metric())
    a, b = CollapseAlarm().fit(curves), CollapseAlarm().fit(curves)
    pd.testing.assert_frame_equal(a.trace_, b.trace_)
    strict = CollapseAlarm(alpha=1e-300, min_rise=10.0).fit(curves)
    assert not strict.trace_["overlap_rise"].any()


def test_no_rise_is_a_miss():
    rng = np.random.default_rng(8)
    jstar = 0.3 - 0.01 * np.arange(9)[:, None] + 0.002 * rng.standard_normal((9, 8))  # falling
    jstar[0] = np.nan
    curves = curves_from(jstar, flat_metric(drop_at=6))
    alarm = CollapseAlarm().fit(curves)
    assert not alarm.fired_ and alarm.level_ is None and alarm.criteria_ == ()
    ev = evaluate_alarm(labelled_collapse_points(curves), alarm.level_, alarm.sparsity_)
    assert (ev["outcome"] == "miss").all()
    assert ev["lead_levels"].isna().all() and ev["lead_sparsity"].isna().all()


def test_late_alarm_false_alarm_and_true_negative():
    rng = np.random.default_rng(9)
    curves = curves_from(u_shaped_jstar(rng, turn=6), flat_metric(drop_at=3))
    alarm = CollapseAlarm().fit(curves)
    assert alarm.level_ == 7
    ev = evaluate_alarm(labelled_collapse_points(curves), alarm.level_, alarm.sparsity_)
    assert (ev["outcome"] == "late").all() and (ev["lead_levels"] == -4).all()
    assert (ev["lead_sparsity"] < 0).all()

    curves = curves_from(u_shaped_jstar(rng, turn=4), flat_metric())
    alarm = CollapseAlarm().fit(curves)
    ev = evaluate_alarm(labelled_collapse_points(curves), alarm.level_, alarm.sparsity_)
    assert (ev["outcome"] == "false_alarm").all()
    ev = evaluate_alarm(labelled_collapse_points(curves), None, None)
    assert (ev["outcome"] == "true_negative").all()


def test_empty_layer_and_entropy_criteria_fire():
    rng = np.random.default_rng(10)
    jstar = 0.3 - 0.01 * np.arange(9)[:, None] + 0.002 * rng.standard_normal((9, 8))
    jstar[0] = np.nan
    empty = np.zeros(9)
    empty[3:] = 1.0
    alarm = CollapseAlarm().fit(curves_from(jstar, flat_metric(), empty=empty))
    assert alarm.level_ == 3 and alarm.criteria_ == ("empty_layer",)

    ent = np.log(10) * np.array([1, 1, 0.9, 0.8, 0.6, 0.51, 0.49, 0.2, 0.1])
    alarm = CollapseAlarm().fit(curves_from(jstar, flat_metric(), entropy_=ent))
    assert alarm.level_ == 6 and alarm.criteria_ == ("entropy_drop",)
    assert alarm.first_levels_ == {"overlap_rise": None, "empty_layer": None, "entropy_drop": 6}
    assert CollapseAlarm(entropy_ratio=0.7).fit(curves_from(jstar, flat_metric(), entropy_=ent)).level_ == 4


def test_alarm_k1_cannot_fire_on_jaccard():
    jstar = np.array([[np.nan], [0.1], [0.05], [0.5], [0.9]])
    alarm = CollapseAlarm().fit(curves_from(jstar, flat_metric(5, 1)))
    assert not alarm.trace_["overlap_rise"].any() and not alarm.fired_
    with pytest.raises(ValueError):
        c = curves_from(jstar, flat_metric(5, 1))
        CollapseAlarm().fit(c.assign(method=np.resize(["a", "b"], len(c))))


def test_labelled_collapse_points_per_ticket_and_mean():
    m = flat_metric(6, 3)
    m[2:, 0] = 0.76  # within the margin: no collapse
    m[4:, 1] = 0.70  # drop of 0.1 at level 4
    curves = curves_from(np.full((6, 3), 0.1), m)
    pts = labelled_collapse_points(curves, margin=0.05).set_index("ticket")
    assert pd.isna(pts.loc[0, "collapse_level"])
    assert pts.loc[1, "collapse_level"] == 4 and pts.loc[1, "collapse_value"] == pytest.approx(0.70)
    assert pd.isna(pts.loc[2, "collapse_level"])
    mean_row = pts[pts.index.isna()]
    assert len(mean_row) == 1 and pd.isna(mean_row["collapse_level"].item())  # mean falls 0.047 only
    tight = labelled_collapse_points(curves, margin=0.02)
    assert tight[tight["ticket"].isna()]["collapse_level"].item() == 4
    with pytest.raises(ValueError):
        labelled_collapse_points(curves, metric="nope")


def test_alarm_summary_counts():
    ev = pd.DataFrame(
        {
            "method": ["a", "a", "a", "b", "b"],
            "outcome": ["hit", "late", "miss", "false_alarm", "true_negative"],
            "lead_levels": pd.array([2, -1, None, None, None], dtype="Int64"),
            "lead_sparsity": [0.2, -0.1, np.nan, np.nan, np.nan],
        }
    )
    s = alarm_summary(ev, by=["method"]).set_index("method")
    assert s.loc["a", ["hit", "late", "miss"]].tolist() == [1, 1, 1]
    assert s.loc["b", ["false_alarm", "true_negative"]].tolist() == [1, 1]
    assert s.loc["a", "mean_lead_levels"] == pytest.approx(0.5)
    assert np.isnan(s.loc["b", "mean_lead_levels"])
    assert alarm_summary(ev)["n"].item() == 5


# ----------------------------------------------------------------------------- figures


def test_collapse_figures():
    from analysis.figures.collapse import alarm_lead_figure, collapse_curve_figure, collapse_overview_figure

    rng = np.random.default_rng(11)
    curves = curves_from(u_shaped_jstar(rng, k=3), flat_metric(9, 3, drop_at=7)).assign(method="rtl")
    fig = collapse_curve_figure(curves, "balanced_accuracy")
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4  # 3 tickets + the mean
    alarm = CollapseAlarm().fit(curves)
    fig = collapse_overview_figure(
        curves, "balanced_accuracy", alarm_sparsity=alarm.sparsity_, collapse_sparsity=0.79
    )
    assert isinstance(fig, go.Figure) and len(fig.data) == 2
    assert {t.name for t in fig.data} == {"balanced_accuracy", "mean latent correlation"}
    assert len(fig.layout.shapes) == 2  # alarm and collapse markers
    ev = collapse_evaluation(curves, alarm=CollapseAlarm())
    fig = alarm_lead_figure(ev)
    assert isinstance(fig, go.Figure) and len(fig.data) >= 1


def test_alarm_ignores_the_densest_level_even_when_its_overlap_is_defined():
    # detector tickets differ at level 0 (own head row), so J* is defined there and low;
    # the first pruning raising J* above it is no collapse and must not fire the alarm
    rng = np.random.default_rng(3)
    jstar = u_shaped_jstar(rng, turn=4)
    jstar[0] = 0.0  # far below everything after: would fire at level 1 if it counted
    curves = curves_from(jstar, flat_metric(drop_at=7), sparsity=np.r_[0.003, 1 - 0.8 ** np.arange(1, 9)])
    alarm = CollapseAlarm().fit(curves)
    assert alarm.level_ == 5
    assert np.isnan(alarm.trace_.set_index("level").loc[0, "overlap"])


# ----------------------------------------------------------------------------- the bounded-lead scorer


def _stepped_curves(n_levels=10, k=4, drop_at=8):
    """A metric flat at 0.9 that drops to 0.5 at ``drop_at``; sparsity 1 - 0.8**L."""
    return curves_from(np.full((n_levels, k), 0.5), flat_metric(n_levels, k, drop_at=drop_at, value=0.9))


def _values(curves, metric="balanced_accuracy"):
    return curves[curves["signal"] == metric][["ticket", "level", "sparsity", "value"]]


def test_an_alarm_that_always_fires_at_level_1_is_early_with_a_large_regret():
    curves = _stepped_curves(drop_at=8)
    points = labelled_collapse_points(curves)
    sp = 1 - 0.8 ** np.arange(10)
    ev = evaluate_alarm(points, 1, sp[1], values=_values(curves))
    assert (ev["outcome"] == "early").all()  # today's rule called this a hit
    # stopping at level 1 gives up the sparsity of level 7 (the last before the drop) minus level 1's
    np.testing.assert_allclose(ev["sparsity_given_up"], sp[7] - sp[1])
    assert (ev["sparsity_given_up"] > 0.5).all() and (ev["metric_lost"] == 0).all()
    # a bounded lead: 1 or 2 levels before the drop is a hit and gives up little
    for lv, lost in ((7, 0.0), (6, sp[7] - sp[6])):
        ev = evaluate_alarm(points, lv, sp[lv], values=_values(curves))
        assert (ev["outcome"] == "hit").all()
        np.testing.assert_allclose(ev["sparsity_given_up"], lost)
    # at the drop or after: late, with the metric lost beyond the margin
    ev = evaluate_alarm(points, 8, sp[8], values=_values(curves), margin=0.05)
    assert (ev["outcome"] == "late").all()
    np.testing.assert_allclose(ev["metric_lost"], 0.9 - 0.05 - 0.5)
    assert (ev["sparsity_given_up"] == 0).all()
    # never firing: a miss, and the sweep's last level is where one stops
    ev = evaluate_alarm(points, None, None, values=_values(curves))
    assert (ev["outcome"] == "miss").all() and np.allclose(ev["metric_lost"], 0.35)
    # nothing collapses: firing gives up the rest of the sweep
    flat = _stepped_curves(drop_at=None)
    ev = evaluate_alarm(labelled_collapse_points(flat), 2, sp[2], values=_values(flat))
    assert (ev["outcome"] == "false_alarm").all()
    np.testing.assert_allclose(ev["sparsity_given_up"], sp[9] - sp[2])
    s = alarm_summary(evaluate_alarm(points, 1, sp[1], values=_values(curves)))
    assert s["early"].item() == len(points) and s["hit"].item() == 0
    assert s["mean_sparsity_given_up"].item() == pytest.approx(sp[7] - sp[1])


def _correlated_masks(rho, k, n, n_levels, rng, change_at=None, rho_after=None, p=0.2):
    """Magnitude pruning of scores with latent correlation ``rho`` between tickets (nested masks)."""

    def scores(r):
        return np.abs(np.sqrt(r) * rng.standard_normal(n) + np.sqrt(1 - r) * rng.standard_normal((k, n)))

    s, later = scores(rho), scores(rho_after) if rho_after is not None else None
    out = []
    for lv in range(n_levels):
        cur = later if change_at is not None and lv >= change_at else s
        d = (1 - p) ** lv
        out.append(
            np.ones_like(cur, bool) if lv == 0 else cur >= np.quantile(cur, 1 - d, axis=1, keepdims=True)
        )
    return out


def _sim_curves(levels_masks, k):
    label = np.arange(300) % k
    preds = pd.DataFrame({"label": label, "subset": label, "pred": label, "pred_max_score": label})
    frames = []
    for lv, m in enumerate(levels_masks):
        df = level_signals({"w": m}, preds, "expert", "oracle")
        df.insert(0, "sparsity", 1 - 0.8**lv)
        df.insert(0, "level", lv)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_masks_of_constant_correlation_do_not_fire_the_alarm(rho):
    rng = np.random.default_rng(int(rho * 10))
    curves = _sim_curves(_correlated_masks(rho, 6, 6000, 8, rng), 6)
    alarm = CollapseAlarm().fit(curves)
    assert alarm.first_levels_["overlap_rise"] is None
    # the signal is flat; J* is not: it rises from level 1 to level 2 and today's rule fires on it
    per = curves[curves["ticket"].isna()].pivot_table(index="level", columns="signal", values="value")
    assert per.loc[1:, "mean_latent_corr"].max() - per.loc[1:, "mean_latent_corr"].min() < 0.1
    assert per.loc[2, "mean_jaccard_star"] > per.loc[1, "mean_jaccard_star"]


def test_a_planted_rise_in_correlation_fires_the_alarm_there():
    rng = np.random.default_rng(7)
    curves = _sim_curves(_correlated_masks(0.3, 6, 6000, 8, rng, change_at=5, rho_after=0.9), 6)
    assert CollapseAlarm().fit(curves).first_levels_["overlap_rise"] == 5


def test_prediction_entropy_never_reads_oracle_routing():
    rng = np.random.default_rng(8)
    k = 4
    label = rng.integers(0, k, 400)
    preds = pd.DataFrame({"label": label, "subset": label, "pred": label, "pred_oracle": label})
    preds["pred_max_score"] = 0  # collapsed onto one ticket: zero entropy
    masks = make_masks(rng, k, 0.5)
    s = level_signals(masks, preds, "expert", "oracle").set_index("signal")
    agg = s[s["ticket"].isna()]["value"]
    assert agg["pred_entropy"] == 0.0  # from pred_max_score, not from the label-routed pred
    only_oracle = preds.drop(columns="pred_max_score")
    s = level_signals(masks, only_oracle, "expert", "oracle")
    assert s[s["signal"] == "pred_entropy"]["value"].isna().all()
    s = level_signals(masks, preds, "detector", "max_score")  # pred is label-free there
    assert s[s["signal"] == "pred_entropy"]["value"].item() == pytest.approx(prediction_entropy(label))


def _curves_with_weak_rtl_level0() -> pd.DataFrame:
    # rtl's jointly retrained level 0 (0.60) is far worse than the dense model (imp level 0, 0.80)
    rows = []
    for ticket in (0, 1, None):
        rows.append(("imp", 0, 0.0, ticket, "balanced_accuracy", 0.80))
        for lv, v in enumerate([0.60, 0.80, 0.78, 0.72, 0.50]):
            rows.append(("rtl", lv, 1 - 0.8**lv, ticket, "balanced_accuracy", v))
    df = pd.DataFrame(rows, columns=["method", "level", "sparsity", "ticket", "signal", "value"])
    df["ticket"] = pd.array(df["ticket"], dtype="Int64")
    return df


def test_labelled_drop_is_measured_from_the_dense_reference():
    from analysis.collapse import reference_rows

    curves = _curves_with_weak_rtl_level0()
    rtl = curves[curves["method"] == "rtl"].drop(columns="method")
    own = labelled_collapse_points(rtl)  # the old reading: rtl's own level 0
    assert (own["dense_value"] == 0.60).all() and list(own["collapse_level"]) == [4, 4, 4]
    ref = reference_rows(curves, ("imp", 0))
    got = labelled_collapse_points(rtl, reference=ref)
    assert (got["dense_value"] == 0.80).all()
    assert list(got["collapse_level"]) == [3, 3, 3]  # 0.72 < 0.80 - 0.05
    ev = collapse_evaluation(curves, reference=("imp", 0))
    assert (ev.loc[ev["method"] == "rtl", "collapse_level"] == 3).all()


def test_routed_metric_reads_the_reference_unrouted():
    ref = pd.DataFrame(
        {"ticket": pd.array([0, None], dtype="Int64"), "signal": "subset_accuracy", "value": [0.9, 0.85]}
    )
    curves = pd.DataFrame(
        {
            "level": [0, 1, 2, 0, 1, 2],
            "sparsity": [0, 0.2, 0.4] * 2,
            "ticket": pd.array([0, 0, 0, 1, 1, 1], dtype="Int64"),
            "signal": "subset_accuracy_oracle",
            "value": [0.5, 0.88, 0.84, 0.5, 0.88, 0.79],
        }
    )
    got = labelled_collapse_points(curves, "subset_accuracy_oracle", reference=ref)
    # ticket 0 against the reference's ticket 0 (0.9); ticket 1, absent there, against its aggregate (0.85)
    assert list(got["dense_value"]) == [0.9, 0.85]
    assert list(got["collapse_level"]) == [2, 2]
