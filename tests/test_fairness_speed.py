"""The Fairness page's fast paths give what fairlearn's MetricFrame and the gathered bootstrap give.

Per-(level, group) metrics and parity differences are read from confusion
counts (:mod:`analysis.confusion_counts`) instead of one sklearn / fairlearn
call per cell; the joint bootstrap sums resample counts instead of gathering
B * n * L codes. Each is held equal, bit for bit, to the library (fairlearn's
MetricFrame over sklearn metrics, on every sample) and to the old code path,
on synthetic edge cases (empty group, single-class group, a class predicted
but absent, labels in {-1, 1}) and on shipped runs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
)

from analysis import fairness as fm
from analysis.confusion_counts import cell_counts, cell_metrics, parity_rates, sorted_codes
from analysis.signals import resample_counts
from artifacts import run_format as rf

REPO = Path(__file__).resolve().parents[1]
ADULT = REPO / "artifacts" / "adult-mlp-cluster-sweep" / "seed-0"
FASHION = REPO / "artifacts" / "fashion-mlp-class-sweep" / "seed-0"
ALL = [*fm.METRICS, *fm.BINARY_METRICS]


def _synthetic_levels(seed: int, n_classes: int, values: np.ndarray | None = None) -> dict:
    """Levels of one table whose groups cover the edge cases of a per-group metric."""
    rng = np.random.default_rng(seed)
    values = np.arange(n_classes) if values is None else values
    n = int(rng.integers(150, 400))
    groups = rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05])
    label = rng.integers(0, n_classes, n)
    label[groups == "c"] = 0  # a single-class group
    out = {}
    for lv in range(4):
        pred = np.where(rng.random(n) < 0.3 + 0.15 * lv, rng.integers(0, n_classes, n), label)
        pred[groups == "d"] = n_classes - 1  # every "d" predicts one class (often absent from its labels)
        g = pd.Series(groups, name="grp")
        keep = np.ones(n, bool) if lv != 2 else groups != "b"  # group "b" empty at level 2
        out[lv] = (values[label[keep]], values[pred[keep]], g[keep].reset_index(drop=True))
    return out


def _fairlearn_by_group(names: list[str], pos_label, yt, yp, g) -> pd.DataFrame:
    """The library on every sample of one level: fairlearn's MetricFrame of the sklearn metrics."""
    fns = fm._metric_functions(names, pos_label)
    return MetricFrame(metrics=fns, y_true=yt, y_pred=yp, sensitive_features=g).by_group


def _assert_same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    want = want.reindex(got.index)
    a = got.to_numpy(dtype=np.float64)
    b = pd.DataFrame(want).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    np.testing.assert_array_equal(a, b)  # exact, NaN where NaN


# ----------------------------------------------------------------------------- per-group metrics


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_classes", [2, 3, 10])
def test_cell_metrics_equal_fairlearn_on_every_sample_bit_for_bit(seed, n_classes):
    levels = _synthetic_levels(seed, n_classes)
    names = ALL if n_classes == 2 else list(fm.METRICS)
    got = fm._by_group_per_level(names, 1, levels)
    assert set(got) == set(levels)
    for lv, (yt, yp, g) in levels.items():
        want = _fairlearn_by_group(names, 1, yt, yp, g)
        _assert_same(got[lv], want)
        if lv == 2:  # the group absent at this level is NaN, as in the stacked MetricFrame
            assert got[lv].loc["b"].isna().all()
    # the old path (one MetricFrame over the stacked levels) gives the same frames
    frame = fm._stacked_frame(fm._metric_functions(names, 1), levels)
    for lv in levels:
        _assert_same(got[lv], frame.by_group.xs(lv, level=0))


def test_binary_rates_with_minus_one_labels_and_a_missing_positive_class():
    # labels in {-1, 1}; pos_label absent from a level; a group of positives only
    levels = _synthetic_levels(5, 2, values=np.array([-1, 1]))
    yt, yp, g = levels[1]
    levels[1] = (np.where(g.to_numpy() == "a", 1, yt), yp, g)
    for pos in (1, -1):
        got = fm._by_group_per_level(ALL, pos, levels)
        for lv, (t, p, grp) in levels.items():
            _assert_same(got[lv], _fairlearn_by_group(ALL, pos, t, p, grp))
    # a positive label in no cell: TPR NaN everywhere, and fairlearn refuses FPR on two other labels
    got = fm._by_group_per_level(["selection_rate", "true_positive_rate"], 7, levels)
    assert (got[0]["selection_rate"] == 0).all() and got[0]["true_positive_rate"].isna().all()
    with pytest.raises(ValueError, match="pos_label"):
        fm._by_group_per_level(["false_positive_rate"], 7, levels)


def test_cells_that_fairlearn_refuses_or_that_are_not_integers_go_to_fairlearn():
    levels = _synthetic_levels(1, 3)
    counts = cell_counts(np.array([0, 1, 2]), np.array([0, 1, 2]), np.zeros(3, int), 1)
    assert cell_metrics(["true_positive_rate"], counts, 1) is None  # three labels in a cell
    with pytest.raises(ValueError, match="no more than two"):
        fm._by_group_per_level(["true_positive_rate"], 1, levels)  # fairlearn's own error, as before
    # labels as strings: fairlearn computes, with the same result as its MetricFrame
    text = {lv: (yt.astype(str), yp.astype(str), g) for lv, (yt, yp, g) in levels.items()}
    assert cell_counts(text[0][0], text[0][1], np.zeros(len(text[0][0]), int), 1) is None
    got = fm._by_group_per_level(list(fm.METRICS), "1", text)
    for lv, (yt, yp, g) in text.items():
        _assert_same(got[lv], _fairlearn_by_group(list(fm.METRICS), "1", yt, yp, g))


@pytest.mark.parametrize("seed", range(3))
def test_sorted_codes_are_numpy_unique(seed):
    rng = np.random.default_rng(seed)
    for values in (
        rng.integers(-3, 4, 50),
        rng.integers(0, 10, 1000).astype(np.int32),
        np.array([5, 5, 5]),
        rng.integers(0, 2**40, 20),  # wide range: numpy's unique
        np.zeros(0, np.int64),
    ):
        labels, codes = sorted_codes(values)
        want_labels, want_codes = np.unique(values, return_inverse=True)
        np.testing.assert_array_equal(labels, want_labels)
        np.testing.assert_array_equal(codes, want_codes)
        assert labels.dtype == want_labels.dtype


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_count", [0, 20, 60, "a group's size"])
def test_parity_differences_equal_fairlearns_functions_bit_for_bit(seed, min_count):
    levels = _synthetic_levels(seed, 2, values=np.array([-1, 1]) if seed % 2 else None)
    if isinstance(min_count, str):  # a group of exactly min_count samples is kept
        min_count = int(levels[0][2].value_counts()["c"])
    yt, yp, g = levels[3]
    levels[3] = (yt, np.ones_like(yp), g)  # every group selects all: no negative prediction
    got = fm._parity_differences(levels, min_count)
    assert got == fm._parity_frame(levels, min_count)  # the old path, exactly
    for lv, (yt, yp, g) in levels.items():
        big = (g.map(g.value_counts()) >= min_count).to_numpy()
        if not big.any():
            assert lv not in got
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dp = demographic_parity_difference(yt[big], yp[big], sensitive_features=g[big])
            eo = equalized_odds_difference(yt[big], yp[big], sensitive_features=g[big])
        assert got[lv] == (dp, eo)


def test_parity_with_labels_fairlearn_refuses_behaves_as_fairlearn():
    levels = _synthetic_levels(2, 3)
    counts = cell_counts(levels[0][0], levels[0][1], np.zeros(len(levels[0][0]), int), 1)
    assert parity_rates(counts) is None
    with pytest.raises(ValueError):
        fm._parity_frame(levels, 10)
    with pytest.raises(ValueError):
        fm._parity_differences(levels, 10)


def test_parity_rates_rest_on_no_sample_as_zero():
    # one cell of positives predicted positive, one of negatives predicted negative, one empty
    yt = np.array([1, 1, 0, 0])
    rates = parity_rates(cell_counts(yt, yt, np.array([0, 0, 1, 1]), 3))
    np.testing.assert_array_equal(rates[:2], [[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    assert np.isnan(rates[2]).all()


# ----------------------------------------------------------------------------- joint bootstrap


def _gathered_joint_bootstrap(predictions_by_level, group_by, metric, n_boot, random_state=0, pos_label=1):
    """The old joint bootstrap: gather every resample's codes at every level."""
    levels = fm._aligned_levels(predictions_by_level, "label", "pred")
    first = levels[min(levels)]
    g = fm.group_labels(first, group_by).to_numpy()
    groups = sorted(set(g))
    labels, codes = np.unique(
        np.concatenate([first["label"].to_numpy(), *[p["pred"].to_numpy() for p in levels.values()]]),
        return_inverse=True,
    )
    n = len(first)
    yt = codes[:n]
    yp = {lv: codes[n * (i + 1) : n * (i + 2)] for i, lv in enumerate(levels)}
    pos = int(np.searchsorted(labels, pos_label)) if pos_label in labels else -1
    rng = np.random.default_rng(random_state)
    out = {lv: np.full((n_boot, len(groups)), np.nan) for lv in levels}
    for j, name in enumerate(groups):
        members = np.flatnonzero(g == name)
        step = max(1, fm._BOOT_CELLS // (members.size * max(1, len(levels))))
        for s0 in range(0, n_boot, step):
            b = min(step, n_boot - s0)
            idx = members[rng.integers(0, members.size, size=(b, members.size))]
            for lv in levels:
                out[lv][s0 : s0 + b, j] = fm._batch_metric(metric, yt[idx], yp[lv][idx], labels.size, pos)
    return groups, out


def _frames(levels: dict) -> dict[int, pd.DataFrame]:
    return {
        lv: pd.DataFrame({"sample": np.arange(len(yt)), "label": yt, "pred": yp, "grp": g.to_numpy()})
        for lv, (yt, yp, g) in levels.items()
        if lv != 2  # the joint bootstrap needs the same samples at every level
    }


@pytest.mark.parametrize(
    ("metric", "n_classes"),
    [*((m, 2) for m in ALL), *((m, 4) for m in fm.METRICS), ("balanced_accuracy", 20), ("recall_macro", 20)],
)
def test_joint_bootstrap_by_counts_is_the_gathered_bootstrap_bit_for_bit(metric, n_classes):
    frames = _frames(_synthetic_levels(3, n_classes))
    frames[1].loc[:3, "grp"] = "e"  # groups of 4 samples, and of 1
    frames[1].loc[4, "grp"] = "f"
    for lv in frames:
        frames[lv]["grp"] = frames[1]["grp"]
    assert (n_classes > fm._COUNTED_CLASSES) == (n_classes == 20)  # both ways of summing are exercised
    groups, got = fm.joint_bootstrap(frames, "grp", metric, n_boot=150, random_state=4)
    want_groups, want = _gathered_joint_bootstrap(frames, "grp", metric, n_boot=150, random_state=4)
    assert groups == want_groups and "f" in groups
    for lv in frames:
        np.testing.assert_array_equal(got[lv], want[lv])


@pytest.mark.parametrize("seed", range(3))
def test_counted_metric_equals_batch_metric_of_the_gathered_resamples(seed):
    rng = np.random.default_rng(seed)
    n, n_classes, n_models = int(rng.integers(1, 60)), int(rng.integers(2, 11)), 3
    yt = rng.integers(0, n_classes, n)
    yp = rng.integers(0, n_classes, (n, n_models))
    yp[:, 0] = yt  # a perfect model
    draw = rng.integers(0, n, (40, n))
    counts = resample_counts(draw)
    for name in ALL:
        if name in fm.BINARY_METRICS and n_classes > 2:
            continue
        got = fm._counted_metric(name, counts, yt, yp, n_classes, pos=1)
        for i in range(n_models):
            want = fm._batch_metric(name, yt[draw], yp[:, i][draw], n_classes, 1)
            np.testing.assert_array_equal(got[:, i], want)
    # the gathered proportions are still the means they were written as
    t, p = yt[draw], yp[:, 1][draw]
    np.testing.assert_array_equal(fm._batch_metric("accuracy", t, p, n_classes, 1), (t == p).mean(axis=1))
    np.testing.assert_array_equal(
        fm._batch_metric("selection_rate", t, p, n_classes, 1), (p == 1).mean(axis=1)
    )


# ----------------------------------------------------------------------------- shipped runs


def _plain(monkeypatch) -> None:
    """The old code path: fairlearn's MetricFrame for every cell, gathered bootstrap resamples."""
    monkeypatch.setattr(fm, "cell_counts", lambda *a, **k: None)
    monkeypatch.setattr(fm, "resample_counts", lambda draw: draw)

    def gathered(name, draw, yt, yp, n_classes, pos):
        return np.stack(
            [fm._batch_metric(name, yt[draw], yp[:, i][draw], n_classes, pos) for i in range(yp.shape[1])],
            axis=1,
        )

    monkeypatch.setattr(fm, "_counted_metric", gathered)


@pytest.mark.parametrize(
    ("path", "method", "group_by", "metrics"),
    [
        (ADULT, "rtl", ["sex"], None),  # the page's default, with every binary metric
        (ADULT, "imp", ["sex", "race"], ["balanced_accuracy", "recall_macro", "false_positive_rate"]),
        (FASHION, "rtl", ["class"], ["accuracy", "balanced_accuracy", "recall_macro"]),
    ],
)
def test_gaps_and_drops_of_a_shipped_run_are_the_old_paths_bit_for_bit(
    monkeypatch, path, method, group_by, metrics
):
    if not (path / "manifest.json").is_file():
        pytest.skip(f"shipped run {path.name} not present")
    run = rf.load_run(path)
    kw = {"min_count": 30, "metrics": metrics}

    def compute():
        lvs = run.levels(method)[::4]  # every 4th level (and the run's dense reference for RTL)
        sub = rf.load_run(path)
        sub.levels = lambda m, lvs=lvs: lvs if m == method else run.levels(m)
        gaps = fm.run_fairness_gaps(sub, group_by, [method], n_boot=60, **kw)
        drops = fm.run_group_drops(sub, group_by, [method], n_boot_drop=60, **kw)
        table = fm.group_metrics(run.predictions(method, lvs[-1]), group_by, n_boot=50, metrics=metrics)
        return gaps, drops, table

    fast = compute()
    _plain(monkeypatch)
    plain = compute()
    assert len(fast[0]) > 20 and fast[0]["ci_low"].notna().any()
    for a, b in zip(fast, plain, strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
