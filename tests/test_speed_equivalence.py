"""The fast paths of the dashboard's computations give exactly what the slow, plain ones give.

Each fast path (sklearn metrics counted directly, vectorised table building,
one computation shared instead of two) is compared with an independent oracle
(sklearn, scipy, the per-level or per-image functions) on a shipped run, with
exact equality: the pages must show the same numbers as before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score

from analysis import load_run
from analysis.metrics import (
    _accuracy,
    _auroc,
    _average_precision,
    crossfit_balanced_accuracy,
    score_columns,
    ticket_metrics,
)

REPO = Path(__file__).resolve().parents[1]
FASHION = REPO / "artifacts" / "fashion-mlp-class-sweep" / "seed-0"


def _shipped(path: Path):
    if not (path / "manifest.json").is_file():
        pytest.skip(f"shipped run {path.name} not present")
    return load_run(path)


# ----------------------------------------------------------------------------- ticket metrics


@pytest.mark.parametrize("seed", range(6))
def test_auroc_average_precision_and_accuracy_are_sklearns_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 400))
    y = rng.random(n) < rng.uniform(0.05, 0.95)
    y[0], y[-1] = True, False  # both classes
    # heavy ties, negative zeros and a few large values: every branch of the ROC counting
    s = np.round(rng.normal(size=n), int(rng.integers(0, 3))) * rng.choice([1.0, 1e6], n, p=[0.95, 0.05])
    s[rng.random(n) < 0.1] = -0.0
    assert _auroc(y, s) == float(roc_auc_score(y, s))
    assert _average_precision(y, s) == float(average_precision_score(y, s))
    only_pos = np.ones(n, dtype=bool)
    assert _average_precision(only_pos, s) == float(average_precision_score(only_pos, s))
    label, pred = rng.integers(0, 5, n), rng.integers(0, 5, n)
    assert _accuracy(label, pred) == float(accuracy_score(label, pred))
    assert _accuracy(label.astype(np.int32), label) == 1.0


def test_ticket_metrics_on_a_shipped_run_equal_sklearn_and_the_public_crossfit():
    run = _shipped(FASHION)
    checked = 0
    for method in run.methods:
        kind = run.manifest["methods"][method].get("ticket_kind", "detector")
        levels = run.levels(method)
        for level in (levels[0], levels[len(levels) // 2], levels[-1]):
            preds = run.predictions(method, level)
            table = ticket_metrics(
                preds, kind, default_routing=run.manifest["methods"][method].get("default_routing")
            )
            subset = preds["subset"].to_numpy()
            for k, col in score_columns(preds).items():
                y, s = subset == k, preds[col].to_numpy(dtype=np.float64)
                got = table[table["ticket"] == k].set_index("metric")["value"]
                if y.any() and not y.all():
                    assert got["auroc"] == float(roc_auc_score(y, s))
                    assert got["balanced_accuracy"] == crossfit_balanced_accuracy(y, s, subset)
                if y.any():
                    assert got["average_precision"] == float(average_precision_score(y, s))
                checked += 1
    assert checked >= 30


# ----------------------------------------------------------------------------- attention tables


def _maps(rng: np.random.Generator, layers: int = 3, b: int = 12, h: int = 4, t: int = 9) -> list[np.ndarray]:
    out = []
    for _ in range(layers):
        x = rng.random((b, h, t, t))
        x[x < 0.3] = 0.0  # zero attention, and (rarely) an all-zero row
        out.append(x / np.maximum(x.sum(axis=-1, keepdims=True), 1e-12))
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_attention_table_equals_per_layer_means_of_attention_entropy(masked):
    from analysis.attention import attention_entropy, attention_entropy_table

    rng = np.random.default_rng(1)
    maps, dense = _maps(rng), _maps(rng)
    km = rng.random((12, 9)) < 0.8 if masked else None
    if km is not None:
        km[:, 0] = True
        km[0, 1:] = False  # an image with one valid token: normalised entropy 0
    table = attention_entropy_table(maps, km, dense=dense, layer_names=["a", "b", "c"])
    dense_table = attention_entropy_table(dense, km, layer_names=["a", "b", "c"])
    rows = np.ones((12, 1, 9), dtype=bool) if km is None else km[:, None, :]
    for name, probs in zip("abc", maps, strict=True):
        kmask = None if km is None else km[:, None, :]
        norm = attention_entropy(probs, kmask, normalize=True)  # (B, H, T), the oracle (scipy-tested)
        nats = attention_entropy(probs, kmask, normalize=False)
        for head in range(4):
            valid = np.broadcast_to(rows, norm.shape)[:, head] & np.isfinite(nats[:, head])
            got = table[(table["layer"] == name) & (table["head"] == head)].iloc[0]
            assert got["n_rows"] == valid.sum()
            assert got["mean_entropy"] == pytest.approx(norm[:, head][valid].mean(), rel=1e-12)
            assert got["mean_entropy_nats"] == pytest.approx(nats[:, head][valid].mean(), rel=1e-12)
            assert got["effective_tokens"] == pytest.approx(np.exp(nats[:, head][valid]).mean(), rel=1e-12)
    assert (table["dense_entropy"].to_numpy() == dense_table["mean_entropy"].to_numpy()).all()
    # a dense table in another row order is matched by (layer, head), as before
    shuffled = dense_table.sample(frac=1.0, random_state=0)
    again = attention_entropy_table(maps, km, dense=shuffled, layer_names=["a", "b", "c"])
    pd.testing.assert_frame_equal(again, table, check_exact=True)
    assert table["layer"].dtype == attention_entropy_table(maps[:1], km)["layer"].dtype


# ----------------------------------------------------------------------------- app accessors


def test_app_collapse_curves_are_the_analysis_table_on_a_shipped_run():
    from analysis.collapse import collapse_curves
    from app import data

    path = str(REPO / "artifacts" / "adult-mlp-cluster-sweep" / "seed-0")
    run = _shipped(Path(path))
    mtime = data.run_mtime(path)
    assert mtime == run.mtime()
    methods = data.classification_methods(path, mtime)
    pd.testing.assert_frame_equal(
        data.collapse_curves(path, mtime), collapse_curves(run, methods), check_exact=True
    )


def test_one_method_curves_across_seeds_are_the_rows_of_the_all_method_table(monkeypatch):
    """One method's curves across seeds (the collapse bands) are its rows of the all-method table."""
    import streamlit as st

    from analysis import collapse
    from app import data

    null = data.null_control(str(REPO / "artifacts" / "adult-mlp-cluster-sweep"))
    if null is None:
        pytest.skip("shipped adult null control not present")
    full = collapse.collapse_curves

    def first_levels(run, methods=None, levels=None):  # 4 levels per method keep the test fast
        return full(run, methods, levels=[0, 1, 5, 9])

    monkeypatch.setattr(data._collapse, "collapse_curves", first_levels)
    st.cache_data.clear()
    try:
        for method in ("rtl", "imp"):  # imp: a method the control lacks (no rows either way)
            old = data.seed_collapse(
                null["path"], tuple(null["runs"]), tuple(null["seeds"]), data.group_mtimes(null)
            )
            old = old[old["method"] == method].reset_index(drop=True)  # the all-method table, as before
            new = data.seed_method_curves(null, method)
            assert list(new.columns) == list(old.columns)
            keys = ["level", "ticket", "signal", "measure"]
            a = old.sort_values(keys).reset_index(drop=True)
            b = new.sort_values(keys).reset_index(drop=True)
            pd.testing.assert_frame_equal(b, a.astype(b.dtypes.to_dict()) if a.empty else a, check_exact=True)
            assert (method == "imp") == new.empty == old.empty
            for signal in set(old["signal"]):  # what the band figure draws: same rows, same level order
                pick = (old["signal"] == signal) & old["ticket"].isna()
                pick_new = (new["signal"] == signal) & new["ticket"].isna()
                pd.testing.assert_frame_equal(
                    new[pick_new].reset_index(drop=True), old[pick].reset_index(drop=True), check_exact=True
                )
        assert len(data.seed_method_curves(null, "rtl"))
    finally:
        st.cache_data.clear()


# ----------------------------------------------------------------------------- collapse similarity rows


@pytest.mark.parametrize("seed", range(4))
def test_pair_means_are_ticket_similarity_summary_bit_for_bit(seed):
    from analysis.collapse import _pair_means
    from analysis.similarity import (
        GLOBAL,
        layer_overlap_counts,
        measures_from_counts,
        similarity_frame,
        ticket_similarity_summary,
    )

    rng = np.random.default_rng(seed)
    for trial in range(40):
        k = int(rng.integers(2, 16))
        density = rng.uniform(0.01, 1.0)
        masks = {f"l{i}": rng.random((k, int(rng.integers(5, 300)))) < density for i in range(3)}
        if trial % 7 == 0:  # all full: J* undefined (NaN) for every pair
            masks = {n: np.ones_like(m) for n, m in masks.items()}
        summary = ticket_similarity_summary(similarity_frame(masks, layers=False))
        summary = summary[summary["layer"] == GLOBAL]
        assert summary["ticket"].astype(int).tolist() == list(range(k))
        measures = measures_from_counts(list(layer_overlap_counts(masks).values()))
        for key in ("jaccard", "jaccard_star"):
            want = summary[f"mean_{key}"].to_numpy()
            assert np.array_equal(_pair_means(measures[key]), want, equal_nan=True)


def test_pairwise_latent_correlation_equals_the_layer_by_layer_estimate():
    from analysis.latent import latent_correlation, pairwise_latent_correlation

    rng = np.random.default_rng(5)
    for trial in range(60):
        k = int(rng.integers(1, 12))
        masks = {
            f"l{i}": rng.random((k, int(rng.integers(0, 300)))) < rng.uniform(0.0, 1.0)
            for i in range(int(rng.integers(1, 10)))
        }
        if trial % 6 == 0:
            masks["full"] = np.ones((k, 40), dtype=bool)  # a full layer says nothing: left out
        ia, ib = np.triu_indices(k, 1)
        num, den = np.zeros(ia.size), np.zeros(ia.size)
        for m in masks.values():  # the oracle: one estimate per layer, weighted by its size
            if m.shape[1] == 0:
                continue
            f = m.astype(np.float32)
            rho = latent_correlation(f.mean(axis=1)[ia], f.mean(axis=1)[ib], (f @ f.T)[ia, ib] / m.shape[1])
            good = np.isfinite(rho)
            num[good] += m.shape[1] * rho[good]
            den[good] += m.shape[1]
        want = np.full((k, k), np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            want[ia, ib] = want[ib, ia] = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
        assert np.array_equal(pairwise_latent_correlation(masks), want, equal_nan=True)
