"""The paper table and its threshold-free, like-for-like metrics (analysis.metrics, analysis.table)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, balanced_accuracy_score, roc_auc_score, roc_curve

from analysis.metrics import (
    crossfit_balanced_accuracy,
    single_oracle_accuracy,
    ticket_metrics,
    youden_threshold,
)
from analysis.table import paper_markdown, table_frame
from artifacts import run_format as rf

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


def _agg(t: pd.DataFrame) -> pd.Series:
    return t[t["ticket"].isna()].set_index("metric")["value"]


def detector_frame(rng: np.random.Generator, k: int = 5, n: int = 2000) -> pd.DataFrame:
    label = rng.integers(0, k, n)
    df = pd.DataFrame({"label": label, "subset": label})
    logits = rng.normal(size=(n, k)) + 2.0 * (label[:, None] == np.arange(k))
    for j in range(k):
        df[f"score_{j}"] = 1 / (1 + np.exp(-logits[:, j]))
        df[f"detect_{j}"] = logits[:, j] > 0
    df["pred_oracle"] = np.where(logits[np.arange(n), label] > 0, label, -1)
    df["pred_max_score"] = logits.argmax(1)
    df["pred"] = df["pred_max_score"]
    return df


def test_auroc_and_average_precision_equal_sklearn_on_synthetic_scores():
    df = detector_frame(np.random.default_rng(0))
    t = ticket_metrics(df, "detector", default_routing="max_score")
    for k in range(5):
        got = t[t["ticket"] == k].set_index("metric")["value"]
        y = (df["subset"] == k).to_numpy()
        assert got["auroc"] == pytest.approx(roc_auc_score(y, df[f"score_{k}"]))
        assert got["average_precision"] == pytest.approx(average_precision_score(y, df[f"score_{k}"]))
        assert got["balanced_accuracy_own"] == pytest.approx(balanced_accuracy_score(y, df[f"detect_{k}"]))
        assert got["balanced_accuracy_prior"] == pytest.approx(
            balanced_accuracy_score(y, df[f"score_{k}"] >= y.mean())
        )


@pytest.mark.parametrize("name", ["fashion-mlp-class-sweep/seed-0", "fashion-vit-cluster-sweep/seed-0"])
def test_auroc_equals_sklearn_on_the_stored_runs(name):
    run = rf.load_run(ARTIFACTS / name)
    for method in run.methods:
        lv = run.levels(method)[3]
        preds = run.predictions(method, lv)
        t = ticket_metrics(preds, run.manifest["methods"][method]["ticket_kind"])
        want = np.mean(
            [
                roc_auc_score(preds["subset"] == k, preds[f"score_{k}"])
                for k in range(len(run.manifest["partition"]["names"]))
            ]
        )
        assert _agg(t)["auroc"] == pytest.approx(want)


def test_common_threshold_is_chosen_on_held_out_samples_and_matches_youden():
    rng = np.random.default_rng(1)
    y = rng.random(4000) < 0.1
    score = np.where(y, rng.normal(1.5, 1, y.size), rng.normal(0, 1, y.size))
    thr = youden_threshold(y, score)
    in_sample = balanced_accuracy_score(y, score >= thr)
    fpr, tpr, _ = roc_curve(y, score)  # sklearn's ROC: the same best point
    assert in_sample == pytest.approx((1 + (tpr - fpr).max()) / 2)
    rounded = np.round(score, 1)  # heavy ties
    fpr, tpr, _ = roc_curve(y, rounded)
    assert balanced_accuracy_score(y, rounded >= youden_threshold(y, rounded)) == pytest.approx(
        (1 + (tpr - fpr).max()) / 2
    )
    # no threshold beats Youden's in sample
    grid = np.quantile(score, np.linspace(0.01, 0.99, 99))
    assert in_sample >= max(balanced_accuracy_score(y, score >= g) for g in grid) - 1e-12
    held = crossfit_balanced_accuracy(y, score)
    assert held <= in_sample + 1e-12 and held > in_sample - 0.03
    # a rescaled score (same ranking, other calibration) gets the same common-threshold figure
    assert crossfit_balanced_accuracy(y, 1 / (1 + np.exp(-5 * score + 3))) == pytest.approx(held)


def test_threshold_artefact_is_removed_by_the_common_threshold():
    """IMP-like calibrated scores vs detector-like ones: own rules disagree, the common rule does not."""
    rng = np.random.default_rng(2)
    df = detector_frame(rng, k=4, n=4000)
    shifted = df.copy()
    for j in range(4):  # the same scores, decided at a badly placed threshold
        shifted[f"detect_{j}"] = df[f"score_{j}"] > 0.95
    a, b = _agg(ticket_metrics(df, "detector")), _agg(ticket_metrics(shifted, "detector"))
    assert a["balanced_accuracy_own"] - b["balanced_accuracy_own"] > 0.05
    assert a["balanced_accuracy"] == pytest.approx(b["balanced_accuracy"])
    assert a["auroc"] == pytest.approx(b["auroc"])


def test_always_firing_detectors_do_not_score_a_high_k_way_accuracy():
    rng = np.random.default_rng(3)
    k, n = 10, 3000
    label = rng.integers(0, k, n)
    df = pd.DataFrame({"label": label, "subset": label})
    for j in range(k):
        df[f"score_{j}"] = 1.0
        df[f"detect_{j}"] = True
    df["pred_oracle"] = label  # the routed detector always fires: its class, always "right"
    df["pred_max_score"] = 0  # ties go to the lowest ticket
    df["pred"] = df["pred_max_score"]
    agg = _agg(ticket_metrics(df, "detector", default_routing="max_score"))
    accuracies = agg[[m for m in agg.index if m.startswith("accuracy")]]
    assert len(accuracies) and (accuracies < 0.2).all()
    assert agg["pooled_recall"] == 1.0  # named for what it is
    assert agg["auroc"] == 0.5 and agg["balanced_accuracy"] == 0.5
    # even when oracle routing is the default, "accuracy" is not written for detectors
    agg = _agg(ticket_metrics(df.assign(pred=df["pred_oracle"]), "detector", default_routing="oracle"))
    assert "accuracy" not in agg and "accuracy_oracle" not in agg


def _cluster_frame(rng, n=3000):
    # 6 classes in 3 clusters of sizes 3, 2, 1; per-class probabilities known
    clusters = np.array([0, 0, 0, 1, 1, 2])
    label = rng.integers(0, 6, n)
    logits = rng.normal(size=(n, 6)) + 1.5 * (label[:, None] == np.arange(6))
    subset = clusters[label]
    restricted = np.where(clusters[None, :] == subset[:, None], logits, -np.inf).argmax(1)
    return pd.DataFrame({"label": label, "subset": subset, "pred": logits.argmax(1)}), restricted


def test_single_ticket_gets_the_experts_oracle():
    df, restricted = _cluster_frame(np.random.default_rng(4))
    want = float((restricted == df["label"]).mean())
    exact = single_oracle_accuracy(df.assign(pred_oracle=restricted))
    assert exact == {"accuracy_oracle": pytest.approx(want)}
    bounds = single_oracle_accuracy(df)  # records without the restricted argmax: bounds around it
    assert bounds["accuracy_oracle_low"] <= want <= bounds["accuracy_oracle_high"]
    assert bounds["accuracy_oracle_low"] > float((df["pred"] == df["label"]).mean())
    # input-space clusters (a class in several subsets): the restriction is vacuous
    mixed = df.assign(subset=np.random.default_rng(5).integers(0, 3, len(df)))
    assert single_oracle_accuracy(mixed) == {
        "accuracy_oracle": pytest.approx((df["pred"] == df["label"]).mean())
    }
    # one class per subset: the restricted argmax is the label, nothing to report
    assert single_oracle_accuracy(df.assign(subset=df["label"])) == {}


def test_expert_and_single_balanced_accuracy_rows_measure_the_same_quantity():
    """The headline row thresholds every method's stored scores by one rule, not experts' routing."""
    run = rf.load_run(ARTIFACTS / "fashion-vit-cluster-sweep" / "seed-0")
    tidy = table_frame(run, levels=[3])
    for method in run.methods:
        preds = run.predictions(method, 3)
        k = len(run.manifest["partition"]["names"])
        want = np.mean(
            [
                crossfit_balanced_accuracy(preds["subset"] == j, preds[f"score_{j}"], preds["subset"])
                for j in range(k)
            ]
        )
        got = tidy[(tidy["method"] == method) & (tidy["metric"] == "balanced_accuracy")]["value"].item()
        assert got == pytest.approx(want)


def test_table_contract_and_markdown(tmp_path):
    run = rf.load_run(ARTIFACTS / "fashion-mlp-class-sweep" / "seed-0")
    tidy = table_frame(run, ["rtl", "imp"], targets=[25, 50])
    assert list(tidy.columns) == ["method", "target", "level", "sparsity", "metric", "value"]
    assert set(tidy["method"]) == {"rtl", "imp"} and set(tidy["target"]) == {25.0, 50.0}
    by_level = table_frame(run, levels={"rtl": [2]})
    assert set(by_level["level"]) == {2} and by_level["target"].isna().all()
    text = paper_markdown(run, [25, 50])
    assert "AUROC" in text and "pooled recall" in text and "K-way accuracy, oracle routing" not in text


def test_table_and_collapse_commands(synthetic_runs_dir, capsys):
    from analysis.cli import main

    run = synthetic_runs_dir / "multi"
    assert main(["table", str(run), "--sparsity", "25", "50"]) == 0
    out = capsys.readouterr().out
    assert "| AUROC" in out and "~25 %" in out
    assert main(["collapse", str(run)]) == 0
    out = capsys.readouterr().out
    assert "tickets_early" in out and "sparsity_given_up" in out
    assert main(["table", str(synthetic_runs_dir / "nope")]) == 2
