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


# ----------------------------------------------------------------------------- results without curves


def test_results_scored_from_predictions_equal_those_read_from_the_collapse_curves():
    """The other seeds' results on the Overview page skip the curves: the same table, bit for bit."""
    from analysis.collapse import collapse_curves
    from analysis.overview import method_capabilities, results_table

    run = _shipped(REPO / "artifacts" / "adult-mlp-cluster-sweep" / "seed-2")
    caps = method_capabilities(run)
    methods = list(caps.loc[caps["classification"], "method"])
    curves = collapse_curves(run, methods, levels=list(range(0, 40, 3)))
    levels = sorted(set(curves["level"]))
    with_curves = results_table(run, levels=levels, curves=curves)
    assert len(with_curves) > 100
    pd.testing.assert_frame_equal(results_table(run, levels=levels), with_curves, check_exact=True)


def test_seed_results_read_the_opened_run_and_score_the_others(monkeypatch):
    from app import data

    group = data.group_of(str(FASHION))
    if group is None:
        pytest.skip("shipped fashion group not present")
    assert group["opened"] in group["runs"] and group["opened"].endswith("seed-0")
    calls = []
    monkeypatch.setattr(data, "results", lambda p, m: calls.append(("curves", p)) or pd.DataFrame())
    monkeypatch.setattr(data, "_scored_results", lambda p, m: calls.append(("scored", p)) or pd.DataFrame())
    monkeypatch.setattr(data, "_stacked", lambda g, mtimes, table: [table(p, 0.0) for p in g["runs"]])
    monkeypatch.setattr("analysis.seeds.across_seeds", lambda stacked, keys, values: stacked)
    data.seed_results.__wrapped__(group["path"], tuple(group["runs"]), (), (), group["opened"])
    assert calls == [("curves" if p == group["opened"] else "scored", p) for p in group["runs"]]


# ----------------------------------------------------------------------------- predictions


def _plain_predictions(level_path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The oracle: the stored file, scores scaled back, shared columns joined one by one (no cache)."""
    import json

    frame = pd.read_parquet(level_path / "predictions.parquet")
    spec = frame.attrs.pop("lottery_quantised", None)
    shared = frame.attrs.pop("lottery_shared", None)
    if spec is not None:
        for c in spec["columns"]:
            frame[c] = (frame[c].to_numpy(np.float64) * float(spec["step"])).astype(np.float32)
    if shared is not None:
        samples = pd.read_parquet(level_path.parents[1] / "samples.parquet")
        for c in shared["columns"]:
            frame[c] = samples[c].array
        frame = frame[shared["order"]]
    assert json.dumps(frame.attrs) is not None
    return frame if columns is None else frame[[c for c in columns if c in frame]]


def test_read_predictions_equals_the_plain_read_and_keeps_its_cache_private(tmp_path):
    import shutil

    from artifacts.run_format import RunFormatError, read_predictions

    run = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-1")
    checked = 0
    for method in run.methods:
        levels = run.levels(method)
        for level in (levels[0], levels[-1]):
            path = run.path / method / f"level_{level:02d}"
            want = _plain_predictions(path)
            assert {"label", "score_0"} <= set(want.columns)
            for _ in range(2):  # the second read joins the cached shared columns
                got = read_predictions(path)
                pd.testing.assert_frame_equal(got, want, check_exact=True)
                assert got.attrs == {}
                got["label"] = -1  # a caller's change stays in its own frame
            pick = ["pred", "label", "score_0", "sample"]
            pd.testing.assert_frame_equal(read_predictions(path, pick), want[pick], check_exact=True)
            checked += 1
    assert checked >= 4
    # a rewritten samples file is read again, and a broken one is refused
    copy = tmp_path / "run"
    shutil.copytree(run.path, copy, ignore=shutil.ignore_patterns("level_0[1-9]", "level_[1-9]*", "extra"))
    level = copy / "rtl" / "level_00"
    read_predictions(level)
    samples = pd.read_parquet(copy / "samples.parquet")
    samples["label"] = samples["label"][::-1].to_numpy()
    samples.to_parquet(copy / "samples.parquet")
    assert (read_predictions(level)["label"].to_numpy() == samples["label"].to_numpy()).all()
    (copy / "samples.parquet").write_bytes(b"not parquet")
    with pytest.raises(RunFormatError):
        read_predictions(level)


# ----------------------------------------------------------------------------- bootstrap bands


@pytest.mark.parametrize("seed", range(4))
def test_bootstrap_sums_by_resample_counts_are_the_gathered_means_bit_for_bit(seed):
    from analysis.signals import bootstrap_band, entropy_band, resample_counts

    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 3000))
    index = rng.integers(0, n, size=(int(rng.integers(1, 300)), n))
    counts = resample_counts(index)
    assert (counts.sum(axis=1) == n).all()
    for x in (
        rng.random(n) < rng.random(),  # indicators
        rng.integers(0, 12, n),  # counts (fires per sample)
        rng.random(n),  # not whole numbers: gathered as before
        np.where(rng.random(n) < 0.5, -0.0, 1.0),  # negative zeros: gathered as before
        np.full(n, np.nan),
    ):
        np.testing.assert_array_equal(bootstrap_band(x, index, counts=counts), bootstrap_band(x, index))
    pred = rng.integers(0, int(rng.integers(1, 20)), n)
    assert entropy_band(pred, index, counts=counts) == entropy_band(pred, index)


def test_prediction_signals_of_a_shipped_run_are_those_of_gathered_resamples(monkeypatch):
    from analysis import signals

    run = _shipped(REPO / "artifacts" / "adult-mlp-cluster-sweep" / "seed-1")
    levels = run.levels("rtl")[:12]
    views = {lv: signals.label_free_view(run.predictions("rtl", lv), "detector") for lv in levels}
    sparsity = {lv: run.sparsity("rtl", lv) for lv in levels}
    fast = signals.prediction_signal_table(views, sparsity, "detector", "rtl", atc_threshold=0.7)
    monkeypatch.setattr(signals, "resample_counts", lambda index: None)  # every band gathered
    plain = signals.prediction_signal_table(views, sparsity, "detector", "rtl", atc_threshold=0.7)
    assert {"fire_none", "churn", "pred_entropy", "margin", "atc_accuracy"} <= set(plain["signal"])
    pd.testing.assert_frame_equal(fast, plain, check_exact=True)


# ----------------------------------------------------------------------------- attention probe tables


def test_attention_probe_tables_equal_the_map_based_tables_of_each_image_set():
    """Row entropies computed once per map and sliced per image set: the tables of the maps themselves."""
    from analysis.attention import attention_entropy_table, image_entropy
    from analysis.attention_probe import probe_attention
    from analysis.attention_sweep import ALL_IMAGES, OWN_IMAGES, PROBE_EXTRA, attention_probe_tables
    from analysis.levels import dense_reference

    run = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-2")
    ref = dense_reference(run, "rtl")
    levels = run.levels("rtl")[1:3]
    tables = attention_probe_tables(run, "rtl", [0, 2], levels, reference=ref)
    x = run.extra(PROBE_EXTRA)["x"]
    subset = np.asarray(run.extra(PROBE_EXTRA)["subset"])
    ref_maps = probe_attention(run, ref[0], ref[1], 0, x)
    names = run.ticket_names("rtl")
    n_sets = 0
    for t in (0, 2):
        for image_set, rows in ((OWN_IMAGES, np.flatnonzero(subset == t)), (ALL_IMAGES, np.arange(len(x)))):
            dense = attention_entropy_table([m[rows] for m in ref_maps])
            got_ref = tables["reference"]
            got_ref = got_ref[(got_ref["ticket"] == names[t]) & (got_ref["images"] == image_set)]
            want_ref = np.concatenate([image_entropy(m[rows]) for m in ref_maps])
            assert np.array_equal(got_ref["entropy"].to_numpy(), want_ref)
            for level in levels:
                maps = [m[rows] for m in probe_attention(run, "rtl", level, t, x)]
                pick = (
                    (tables["heads"]["ticket"] == names[t])
                    & (tables["heads"]["images"] == image_set)
                    & (tables["heads"]["level"] == level)
                )
                got = tables["heads"][pick].reset_index(drop=True)[attention_entropy_table(maps).columns]
                pd.testing.assert_frame_equal(
                    got, attention_entropy_table(maps, dense=dense), check_exact=True
                )
                img = tables["images"]
                img = img[
                    (img["ticket"] == names[t]) & (img["images"] == image_set) & (img["level"] == level)
                ]
                assert np.array_equal(
                    img["entropy"].to_numpy(), np.concatenate([image_entropy(m) for m in maps])
                )
                n_sets += 1
    assert n_sets == 8


# ----------------------------------------------------------------------------- UMAP warm-up


def test_umap_warm_up_waits_while_a_page_computes_and_starts_when_idle_or_asked(monkeypatch):
    import threading
    import time

    from app import data

    monkeypatch.setattr(data, "_warm_now", threading.Event())
    stop = threading.Event()

    def page() -> None:  # a page computing: the process keeps a CPU busy
        while not stop.is_set():
            sum(i * i for i in range(10_000))

    busy = threading.Thread(target=page, daemon=True)
    busy.start()
    waiter = threading.Thread(target=data._wait_until_idle, kwargs={"quiet": 0.2}, daemon=True)
    try:
        waiter.start()
        time.sleep(1.0)
        assert waiter.is_alive()  # still waiting: the process is busy
    finally:
        stop.set()
        busy.join()
    waiter.join(timeout=5.0)
    assert not waiter.is_alive()  # idle: it went on
    # the Projection page asks: no waiting, idle or not
    stop.clear()
    busy = threading.Thread(target=page, daemon=True)
    busy.start()
    try:
        data._warm_now.set()
        t0 = time.perf_counter()
        data._wait_until_idle(quiet=5.0)
        assert time.perf_counter() - t0 < 1.0
    finally:
        stop.set()
        busy.join()


# ----------------------------------------------------------------------------- ViT Collapse and Attention


def test_latent_correlation_equals_the_bisection_on_the_plain_probability_bit_for_bit():
    """The bisection with its rho-free parts computed once is the step-by-step one on ``_both_small``."""
    from scipy.special import ndtri

    from analysis.latent import _BISECTIONS, _both_small, latent_correlation

    rng = np.random.default_rng(11)
    for _ in range(20):
        p = int(rng.integers(1, 200))
        d_a, d_b = rng.uniform(0.0, 1.0, p), rng.uniform(0.0, 1.0, p)
        d_a[rng.random(p) < 0.1] = 1.0  # full masks: NaN
        p_both = np.minimum(d_a, d_b) * rng.uniform(0.0, 1.0, p)
        ok = (d_a > 0) & (d_a < 1) & (d_b > 0) & (d_b < 1)
        ta, tb = ndtri(1 - d_a[ok] / 2), ndtri(1 - d_b[ok] / 2)
        target = p_both[ok] - (d_a[ok] + d_b[ok] - 1.0)
        lo, hi = np.zeros(ta.shape), np.full(ta.shape, 0.9999)
        for _ in range(_BISECTIONS):  # the oracle: the probability recomputed whole at every step
            mid = 0.5 * (lo + hi)
            above = _both_small(ta, tb, mid) < target
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        want = np.full(p, np.nan)
        want[ok] = 0.5 * (lo + hi)
        assert np.array_equal(latent_correlation(d_a, d_b, p_both), want, equal_nan=True)


def test_latent_correlation_from_overlap_counts_is_the_mask_estimate_bit_for_bit():
    from analysis.latent import (
        EXACT_FLOAT32,
        pairwise_latent_correlation,
        pairwise_latent_correlation_from_counts,
        ticket_latent_correlation,
        ticket_latent_correlation_from_counts,
    )
    from analysis.similarity import OverlapCounts, layer_overlap_counts

    rng = np.random.default_rng(12)
    for trial in range(120):
        k = int(rng.integers(1, 10))
        masks = {
            f"l{i}": rng.random((k, int(rng.integers(0, 4000)))) < rng.uniform(0.0, 1.0)
            for i in range(int(rng.integers(1, 8)))
        }
        if trial % 5 == 0:
            masks["full"] = np.ones((k, 33), dtype=bool)
        if trial % 7 == 0:
            masks["empty"] = np.zeros((k, 50), dtype=bool)
        counts = list(layer_overlap_counts(masks).values())
        assert np.array_equal(
            pairwise_latent_correlation_from_counts(counts),
            pairwise_latent_correlation(masks),
            equal_nan=True,
        )
        assert np.array_equal(
            ticket_latent_correlation_from_counts(counts), ticket_latent_correlation(masks), equal_nan=True
        )
    # the densities' float32 division, as np.mean does it, at sizes up to the exact limit
    for n in [*rng.integers(1, EXACT_FLOAT32, 300), EXACT_FLOAT32 - 1, EXACT_FLOAT32]:
        kept = rng.integers(0, n + 1, 3)
        c = OverlapCounts(np.diag(kept), kept, int(n))
        got = pairwise_latent_correlation_from_counts([c])  # runs the division; checked against mean:
        assert got.shape == (3, 3)
        want = np.array([np.float32(v) / np.float64(n) for v in kept]).astype(np.float32)
        dens = kept.astype(np.float32)
        assert np.array_equal(np.true_divide(dens, np.intp(n), out=dens, casting="unsafe"), want)
    big = OverlapCounts(np.zeros((2, 2), dtype=np.int64), np.zeros(2, dtype=np.int64), EXACT_FLOAT32 + 1)
    with pytest.raises(ValueError, match="not exact"):
        pairwise_latent_correlation_from_counts([big])


def test_collapse_similarity_rows_are_those_of_the_full_measures_and_the_masks():
    """J, J* from the Jaccard measures alone and the latent correlation from the counts: as before."""
    from analysis.collapse import _pair_means, _similarity_rows
    from analysis.latent import ticket_latent_correlation
    from analysis.packed import packed_masks
    from analysis.similarity import layer_overlap_counts, measures_from_counts

    checked = 0
    for path in (REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-0", FASHION):
        run = _shipped(path)
        levels = run.levels("rtl")
        for level in (levels[0], levels[1], levels[len(levels) // 2], levels[-1]):
            masks = run.masks("rtl", level)
            full = measures_from_counts(list(layer_overlap_counts(masks).values()))
            want = np.concatenate(
                [
                    _pair_means(full["jaccard"]),
                    _pair_means(full["jaccard_star"]),
                    ticket_latent_correlation(masks),
                ]
            )
            for m in (masks, packed_masks(run, "rtl", level)):
                rows = _similarity_rows(m)
                assert np.array_equal(rows["value"].to_numpy(), want, equal_nan=True)
            checked += 1
    assert checked == 8


def test_packed_subset_counts_are_keyed_by_the_file_read_once_per_instance(tmp_path):
    from analysis import packed
    from analysis.packed import PackedMasks
    from artifacts.run_format import save_masks

    rng = np.random.default_rng(3)
    path = tmp_path / "masks.safetensors"
    a = {"w": rng.random((3, 40)) < 0.5}
    save_masks(path, a)
    packed.clear_cache()
    first = PackedMasks(path)
    counts = first.subset_counts("w").copy()
    assert counts[0b011] == (a["w"][0] & a["w"][1]).sum()
    b = {"w": ~a["w"]}
    save_masks(path, b)  # rewritten: another size or mtime, so a new reader counts again
    import os

    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    second = PackedMasks(path)
    assert second.subset_counts("w")[0b011] == (b["w"][0] & b["w"][1]).sum()
    assert first._file_key() != second._file_key()
    assert PackedMasks(path).subset_counts("w") is second.subset_counts("w")  # one pass per version


def test_run_signals_draw_each_level_once_and_equal_each_method_alone(monkeypatch):
    """Methods run level by level share a level's bootstrap draw: the tables of each method run alone."""
    from analysis import signals

    run = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-0")
    levels = {m: run.levels(m)[:6] for m in run.methods}
    kinds = {m: signals._ticket_kind(run, m) for m in run.methods}
    views = {
        m: {lv: signals.label_free_view(run.predictions(m, lv), kinds[m]) for lv in levels[m]}
        for m in run.methods
    }
    sparsity = {m: {lv: run.sparsity(m, lv) for lv in levels[m]} for m in run.methods}
    dense = views["imp"][0]
    alone = {
        m: signals.prediction_signal_table(
            views[m], sparsity[m], kinds[m], m, dense=dense if m != "imp" else None, atc_threshold=0.5
        )
        for m in run.methods
    }
    draws = []
    boot = signals._boot_index
    monkeypatch.setattr(signals, "_boot_index", lambda n, b, r, lv: draws.append(lv) or boot(n, b, r, lv))
    rows = {m: signals._Rows() for m in run.methods}
    steps = [
        signals._prediction_steps(
            rows[m],
            views[m],
            sparsity[m],
            kinds[m],
            m,
            dense=dense if m != "imp" else None,
            atc_threshold=0.5,
            n_boot=200,
            alpha=0.05,
            random_state=0,
        )
        for m in run.methods
    ]
    signals._run_steps(steps, 200, 0)
    assert sorted(draws) == sorted(set(levels["imp"]) | set(levels["rtl"]))  # once per level
    for m in run.methods:
        pd.testing.assert_frame_equal(rows[m].frame(), alone[m], check_exact=True)


def test_attention_probe_tables_are_the_per_ticket_tables_stacked():
    """One model and one read per level, tables stacked once: the frames of probing each ticket alone."""
    from analysis.attention import entropy_table_from_rows, image_entropy_from_rows, row_entropies
    from analysis.attention_probe import probe_attention, probe_attention_tickets
    from analysis.attention_sweep import (
        ALL_IMAGES,
        OWN_IMAGES,
        PROBE_EXTRA,
        SWEEP_KEYS,
        attention_probe_tables,
    )
    from analysis.levels import dense_reference

    run = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-1")
    x = run.extra(PROBE_EXTRA)["x"]
    subset = np.asarray(run.extra(PROBE_EXTRA)["subset"])
    names = run.ticket_names("rtl")
    # several tickets through one model, in any order: each ticket's maps alone
    many = probe_attention_tickets(run, "rtl", 3, [2, 0, 2, 1], x)
    for t, maps in zip([2, 0, 2, 1], many, strict=True):
        for got, want in zip(maps, probe_attention(run, "rtl", 3, t, x), strict=True):
            assert np.array_equal(got, want)
    for ref, levels, tickets in ((dense_reference(run, "rtl"), [1, 4, 2], [3, 1]), (None, [0, 3], [0, 2])):
        tables = attention_probe_tables(run, "rtl", tickets, levels, reference=ref)
        heads, images, refs = [], [], []  # the oracle: one probe and one frame per piece, concatenated
        ref_rows = None if ref is None else [row_entropies(m) for m in probe_attention(run, *ref, 0, x)]
        for t in tickets:
            sets = {OWN_IMAGES: np.flatnonzero(subset == t), ALL_IMAGES: np.arange(len(x))}
            rows_of = {lv: [row_entropies(m) for m in probe_attention(run, "rtl", lv, t, x)] for lv in levels}
            for image_set, rows in sets.items():
                if ref_rows is not None:
                    part = [(h[rows], n[rows]) for h, n in ref_rows]
                    dense = entropy_table_from_rows(part)
                    for i, r in enumerate(part):
                        refs.append(
                            pd.DataFrame(
                                {
                                    "level": ref[1],
                                    "sparsity": run.sparsity(*ref),
                                    "ticket": names[t],
                                    "images": image_set,
                                    "layer": str(i),
                                    "image": rows,
                                    "entropy": image_entropy_from_rows(*r),
                                }
                            )
                        )
                else:
                    dense = entropy_table_from_rows([(h[rows], n[rows]) for h, n in rows_of[0]])
                for lv in levels:
                    part = [(h[rows], n[rows]) for h, n in rows_of[lv]]
                    df = entropy_table_from_rows(part, dense=dense)
                    keys = (lv, run.sparsity("rtl", lv), names[t], image_set, len(rows))
                    for i, (col, val) in enumerate(zip(SWEEP_KEYS, keys, strict=True)):
                        df.insert(i, col, val)
                    heads.append(df)
                    for i, r in enumerate(part):
                        images.append(
                            pd.DataFrame(
                                {
                                    "level": lv,
                                    "sparsity": run.sparsity("rtl", lv),
                                    "ticket": names[t],
                                    "images": image_set,
                                    "layer": str(i),
                                    "image": rows,
                                    "entropy": image_entropy_from_rows(*r),
                                }
                            )
                        )
        pd.testing.assert_frame_equal(tables["heads"], pd.concat(heads, ignore_index=True), check_exact=True)
        pd.testing.assert_frame_equal(
            tables["images"], pd.concat(images, ignore_index=True), check_exact=True
        )
        if ref is None:
            assert tables["reference"].empty
        else:
            pd.testing.assert_frame_equal(
                tables["reference"], pd.concat(refs, ignore_index=True), check_exact=True
            )


def test_app_prediction_store_reads_a_level_once_and_hands_out_private_frames(monkeypatch, tmp_path):
    """The Collapse page's curves and frozen alarm read a level once; a copy per call; rewrites re-read."""
    import shutil

    import artifacts.run_format as rf
    from app import data

    reads = []
    plain = rf.read_predictions
    monkeypatch.setattr(rf, "read_predictions", lambda p, c=None: reads.append(str(p)) or plain(p, c))
    copy = tmp_path / "run"
    src = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-1").path
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("level_0[3-9]", "level_[1-9]*", "extra"))
    run = data._StoredPredictionsRun(copy)
    store = data._PredictionStore(10**9)
    monkeypatch.setattr(data, "_prediction_store", lambda: store)
    want = plain(copy / "rtl" / "level_01")
    first = run.predictions("rtl", 1)
    first["label"] = -1  # a caller's change stays in its own frame
    for _ in range(2):
        pd.testing.assert_frame_equal(run.predictions("rtl", 1), want, check_exact=True)
    assert len(reads) == 1
    # the page's two computations: curves and the frozen alarm, each level read once between them
    from analysis.alarm import alarm_signal_table
    from analysis.collapse import collapse_curves

    reads.clear()
    curves = collapse_curves(run, ["rtl", "imp"])
    signals = alarm_signal_table(run, ["rtl", "imp"])
    levels = [(m, lv) for m in ("rtl", "imp") for lv in run.levels(m)]
    assert sorted(reads) == sorted(
        {str(rf.level_dir(copy, m, lv)) for m, lv in levels} - {str(copy / "rtl" / "level_01")}
    )
    plain_run = rf.load_run(copy)
    pd.testing.assert_frame_equal(curves, collapse_curves(plain_run, ["rtl", "imp"]), check_exact=True)
    pd.testing.assert_frame_equal(signals, alarm_signal_table(plain_run, ["rtl", "imp"]), check_exact=True)
    # a rewritten level is read again; a small budget keeps what fits
    frame = plain(copy / "rtl" / "level_02")
    frame["pred"] = frame["pred"].to_numpy()[::-1]
    frame.to_parquet(copy / "rtl" / "level_02" / "predictions.parquet")
    reads.clear()
    assert (run.predictions("rtl", 2)["pred"].to_numpy() == frame["pred"].to_numpy()).all()
    assert len(reads) == 1
    small = data._PredictionStore(int(want.memory_usage(deep=True).sum()) + 10)
    monkeypatch.setattr(data, "_prediction_store", lambda: small)
    for lv in (0, 1, 0):
        run.predictions("rtl", lv)
    assert len(small.frames) == 1 and small.size <= small.budget


@pytest.mark.parametrize("dense_blocks", [None, 3, 2])
def test_attention_head_columns_are_the_entropy_table_with_its_dense_table(dense_blocks):
    """The columns the probe tables stack per piece: entropy_table_from_rows's, dense matched or not."""
    from analysis.attention import (
        ATTENTION_COLUMNS,
        entropy_columns_from_rows,
        entropy_table_from_rows,
        row_entropies,
    )
    from analysis.attention_sweep import _head_columns

    rng = np.random.default_rng(dense_blocks or 0)
    part = [row_entropies(m) for m in _maps(rng)]
    dense_part = None if dense_blocks is None else [row_entropies(m) for m in _maps(rng, layers=dense_blocks)]
    got = _head_columns(part, None if dense_part is None else entropy_columns_from_rows(dense_part))
    want = entropy_table_from_rows(
        part, dense=None if dense_part is None else entropy_table_from_rows(dense_part)
    )
    pd.testing.assert_frame_equal(pd.DataFrame(got)[ATTENTION_COLUMNS], want, check_exact=True)
    if dense_blocks == 2:  # the third block has no dense counterpart
        assert want["dense_entropy"].isna().sum() == 4


def test_mask_levels_header_is_parsed_once_per_file_version_and_given_out_privately(tmp_path):
    import shutil

    from artifacts.run_format import MASK_LEVELS, RunFormatError, _mask_levels_header, method_dir

    src = _shipped(REPO / "artifacts" / "fashion-vit-cluster-sweep" / "seed-1").path
    path = method_dir(src, "imp") / MASK_LEVELS
    if not path.is_file():
        pytest.skip("shipped run has no compact masks")
    run_dir = tmp_path / "run"
    (run_dir / "imp").mkdir(parents=True)
    copy = method_dir(run_dir, "imp") / MASK_LEVELS
    shutil.copyfile(path, copy)
    shapes, last = _mask_levels_header(run_dir, "imp")
    assert last >= 1 and all(len(s) >= 2 for s in shapes.values())
    shapes[next(iter(shapes))].append(99)  # a caller's change stays in its own dict
    assert _mask_levels_header(run_dir, "imp") == (_mask_levels_header(src, "imp")[0], last)
    copy.write_bytes(b"\x08" + b"\x00" * 7 + b"not json")  # rewritten: parsed again, and refused
    for _ in range(2):
        with pytest.raises(RunFormatError, match="corrupt mask-levels"):
            _mask_levels_header(run_dir, "imp")
    copy.unlink()
    assert _mask_levels_header(run_dir, "imp") is None


def _level_frame_as_before(masks, predictions, kind, routing) -> pd.DataFrame:
    """The oracle: a level's rows as level_signals built them, five frames concatenated."""
    import warnings

    from analysis.collapse import (
        _long,
        _similarity_rows,
        label_free_prediction,
        mask_signals,
        prediction_entropy,
        prediction_entropy_se,
    )

    per_ticket = kind != "single"
    metrics = ticket_metrics(predictions, kind, default_routing=routing)
    metrics = _long(list(metrics["ticket"]), list(metrics["metric"]), list(metrics["value"]))
    sim = _similarity_rows(masks) if per_ticket else _long([], [], [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sim_mean = sim.groupby("signal", sort=False)["value"].mean()
    sim_agg = _long([None] * len(sim_mean), list(sim_mean.index), list(sim_mean.values))
    col = label_free_prediction(predictions, routing)
    pred = predictions[col].to_numpy() if col else None
    ent = _long(
        [None, None],
        ["pred_entropy", "pred_entropy_se"],
        [prediction_entropy(pred), prediction_entropy_se(pred)] if col else [np.nan, np.nan],
    )
    parts = [metrics, sim, sim_agg, mask_signals(masks, per_ticket=per_ticket), ent]
    return pd.concat([p for p in parts if len(p)], ignore_index=True)


@pytest.mark.parametrize(
    "group", ["fashion-vit-cluster-sweep", "adult-mlp-cluster-sweep", "fashion-mlp-class-sweep"]
)
def test_collapse_curves_built_once_are_the_per_level_frames_concatenated(group):
    from analysis.collapse import collapse_curves, level_signals
    from analysis.packed import packed_masks

    run = _shipped(REPO / "artifacts" / group / "seed-2")
    picked = {m: run.levels(m)[:2] + run.levels(m)[-1:] for m in run.methods}
    frames = []
    for method, levels in picked.items():
        entry = run.manifest["methods"][method]
        kind, routing = entry.get("ticket_kind", "detector"), entry.get("default_routing")
        for level in levels:
            preds = run.predictions(method, level)
            for masks in (packed_masks(run, method, level), run.masks(method, level)):
                df = _level_frame_as_before(masks, preds, kind, routing)
                pd.testing.assert_frame_equal(
                    level_signals(masks, preds, kind, routing), df, check_exact=True
                )
            df.insert(0, "sparsity", run.sparsity(method, level))
            df.insert(0, "level", level)
            df.insert(0, "method", method)
            frames.append(df)
    want = pd.concat(frames, ignore_index=True)
    pd.testing.assert_frame_equal(collapse_curves(run, levels=picked), want, check_exact=True)
