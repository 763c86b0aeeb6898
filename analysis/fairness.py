"""Fairness across subgroups: per-group metrics, and how pruning widens the gaps.

Pruning can hurt under-represented groups first (Hooker et al. 2019/2020, Tran
et al. 2022). Groups are the values of any group column of a predictions table
(``class``, ``cluster``, audit attributes such as ``sex`` and ``race``) or the
intersections of several columns. Point estimates are fairlearn's
:class:`~fairlearn.metrics.MetricFrame` over sklearn metrics, read from each
(level, group) cell's confusion counts (:mod:`analysis.confusion_counts`: the
same numbers bit for bit, ``tests/test_fairness_speed.py``), and computed by
MetricFrame itself where those do not apply.

Metrics
-------
accuracy, balanced_accuracy, recall_macro
    sklearn's ``accuracy_score``, ``balanced_accuracy_score`` and
    ``recall_score(average="macro", zero_division=0)``. Balanced accuracy
    averages recall over the classes present in the group's labels;
    ``recall_macro`` uses sklearn's default label set (labels and predictions),
    so it also counts a 0 for every class predicted in the group but absent
    from its labels (e.g. in a ``class`` group it is not the class recall).
selection_rate, true_positive_rate, false_positive_rate
    Binary tasks only (fairlearn's functions, positive label ``pos_label``).
    TPR (FPR) is NaN in a group with no positive (negative) sample, where it
    is undefined, rather than fairlearn's 0.

Group tables (:func:`group_metrics`) are tidy: ``group_by, group, n, n_metric,
small, metric, value, ci_low, ci_high, interval``. ``n_metric`` is the count
the metric rests on: the positives for TPR, the negatives for FPR, the smallest
class present for balanced accuracy and macro recall, every sample otherwise;
``small`` flags ``n_metric < min_count`` (a group of 66 with 3 positives has a
TPR of 3 samples). Groups with no sample (expected from ``groups=`` or from the
categories of a categorical column) appear with ``n = 0``, ``small = True`` and
NaN values.

Intervals
---------
- Per-group proportions (accuracy, selection rate, TPR, FPR): Wilson score
  intervals on ``n_metric`` trials (``interval = "wilson"``); they do not
  collapse to zero width at 0 or 1, where a bootstrap would.
- Balanced accuracy and macro recall: percentile bootstrap resampling the
  group's own samples (``"bootstrap"``); where the resamples have no spread at 0
  or 1, the Wilson interval of the value on ``n_metric`` trials instead
  (``"wilson (degenerate bootstrap)"``).
- Decisions (:func:`fairness_gaps`: the between-group gap and ratio, the worst
  group; :func:`group_drops`: each group's drop ``psi_g``): percentile
  bootstrap that resamples the evaluation samples jointly, stratified by group
  (each group keeps its size), with the *same* resamples at every level, so
  drops are paired with the dense model.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import sklearn.metrics as skm
from fairlearn.metrics import (
    MetricFrame,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from analysis.confusion_counts import cell_counts, cell_metrics, parity_rates, sorted_codes
from analysis.signals import resample_counts

if TYPE_CHECKING:
    from artifacts.run_format import Run

__all__ = [
    "BINARY_METRICS",
    "GAP_COLUMNS",
    "GROUP_COLUMNS",
    "METRICS",
    "wilson_interval",
    "fairness_gaps",
    "group_drops",
    "joint_bootstrap",
    "group_labels",
    "group_metrics",
    "run_fairness_gaps",
    "run_group_drops",
]

METRICS = ("accuracy", "balanced_accuracy", "recall_macro")
BINARY_METRICS = ("selection_rate", "true_positive_rate", "false_positive_rate")
GROUP_COLUMNS = [
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
GAP_COLUMNS = ["level", "sparsity", "group_by", "metric", "statistic", "value", "group", "ci_low", "ci_high"]
PROPORTIONS = ("accuracy", "selection_rate", "true_positive_rate", "false_positive_rate")
# Direction of "better" for the worst-group statistic; selection rate has none.
_HIGHER_IS_BETTER = {
    "accuracy": True,
    "balanced_accuracy": True,
    "recall_macro": True,
    "true_positive_rate": True,
    "false_positive_rate": False,
}
_JOIN = " & "
_REFERENCE = -1  # key of the dense reference among the levels (group_drops, fairness_gaps)
_BOOT_CELLS = 1 << 21  # resampled labels held at once per metric batch
# Above this many classes a class-averaged metric's bootstrap gathers the resampled codes
# (B * n per level) instead of summing counts per class (B * n * C per level).
_COUNTED_CLASSES = 16


# ----------------------------------------------------------------------------- metric functions


def _quiet(fn: Callable) -> Callable:
    def wrapped(y_true, y_pred, **kwargs):
        with warnings.catch_warnings():
            # sklearn warns about classes missing from a group; the convention is documented.
            warnings.simplefilter("ignore")
            return fn(y_true, y_pred, **kwargs)

    wrapped.__name__ = getattr(fn, "__name__", "metric")
    return wrapped


def _tpr(y_true, y_pred, pos_label, sample_weight=None) -> float:
    if not np.any(np.asarray(y_true) == pos_label):
        return float("nan")
    return float(true_positive_rate(y_true, y_pred, pos_label=pos_label, sample_weight=sample_weight))


def _fpr(y_true, y_pred, pos_label, sample_weight=None) -> float:
    if np.all(np.asarray(y_true) == pos_label):
        return float("nan")
    return float(false_positive_rate(y_true, y_pred, pos_label=pos_label, sample_weight=sample_weight))


def _distinct_rows(y_true: np.ndarray, y_pred: np.ndarray, groups: pd.Series, control=None):
    """The distinct (label, prediction, group) rows and how often each occurs.

    Every metric of this module depends on the samples only through these
    counts, so evaluating on the distinct rows weighted by their counts gives
    exactly the per-sample result, at a cost that no longer grows with N
    (fairlearn's MetricFrame stacks each column element by element).

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (N,)
    groups : Series, shape (N,)
    control : ndarray, shape (N,), optional
        A control feature (the level of stacked levels): rows are then distinct
        per (control, label, prediction, group).

    Returns
    -------
    y_true, y_pred : ndarray, shape (R,)
    groups : Series, shape (R,), named like ``groups``
    weight : ndarray of int64, shape (R,)
    control : ndarray, shape (R,)
        Only when ``control`` is given.
    """
    df = pd.DataFrame({"t": y_true, "p": y_pred, "g": groups.array})  # strings stay arrow-backed
    keys = ["t", "p", "g"]
    if control is not None:
        df.insert(0, "c", control)
        keys.insert(0, "c")
    c = df.groupby(keys, sort=False).size().reset_index(name="w")
    g = pd.Series(c["g"].to_numpy(), name=groups.name)
    out = c["t"].to_numpy(), c["p"].to_numpy(), g, c["w"].to_numpy()
    return (*out, c["c"].to_numpy()) if control is not None else out


def _stacked_frame(
    fns: dict[str, Callable], levels: Mapping[int, tuple[np.ndarray, np.ndarray, pd.Series]]
) -> MetricFrame | None:
    """One fairlearn MetricFrame for several levels, the level as its control feature.

    ``by_group`` is indexed by ``(level, group)``; each cell is the metric on that
    level's samples of that group, as a MetricFrame of the level alone would give
    (fairlearn evaluates every control level separately), at the cost of one
    construction instead of one per level. Evaluated on the weighted distinct
    rows (:func:`_distinct_rows`).

    Parameters
    ----------
    fns : dict of str to callable
    levels : mapping of int to (y_true, y_pred, groups)
        Arrays of shape (N_level,) per level; empty levels are left out.

    Returns
    -------
    MetricFrame or None
        None when no level has a sample.
    """
    parts = {lv: v for lv, v in levels.items() if len(v[2])}
    if not parts:
        return None
    name = next(iter(parts.values()))[2].name
    yt, yp, g, w, lv = _distinct_rows(
        np.concatenate([v[0] for v in parts.values()]),
        np.concatenate([v[1] for v in parts.values()]),
        pd.concat([v[2].reset_index(drop=True) for v in parts.values()], ignore_index=True).rename(name),
        np.repeat(np.fromiter(parts, dtype=np.int64), [len(v[2]) for v in parts.values()]),
    )
    return MetricFrame(
        metrics=fns,
        y_true=yt,
        y_pred=yp,
        sensitive_features=g,
        control_features=pd.Series(lv, name="level"),
        sample_params={m: {"sample_weight": w} for m in fns},
    )


def _stacked_cells(
    levels: Mapping[int, tuple[np.ndarray, np.ndarray, pd.Series]],
) -> tuple[list[int], pd.Index, np.ndarray, np.ndarray, np.ndarray] | None:
    """Every level's samples stacked, each tagged with its (level, group) cell.

    Parameters
    ----------
    levels : mapping of int to (y_true, y_pred, groups)
        Arrays of shape (N_level,) per level; empty levels are left out.

    Returns
    -------
    keys : list of int
        The L levels with a sample, in the mapping's order.
    groups : Index, shape (G,)
        Every group of any level (named like the groups Series).
    y_true, y_pred : ndarray, shape (N,)
    cells : ndarray of int64, shape (N,)
        ``l * G + g`` for level ``keys[l]`` and group ``groups[g]``.
    None
        When a group label is missing (NaN): fairlearn decides what that means.
    """
    parts = {lv: v for lv, v in levels.items() if len(v[2])}
    index: dict = {}
    codes = []
    for _, _, g in parts.values():
        code, uniques = pd.factorize(g)
        if (code < 0).any():
            return None
        remap = np.array([index.setdefault(u, len(index)) for u in uniques], dtype=np.int64)
        codes.append(remap[code])
    n_groups = len(index)
    cells = [i * n_groups + c for i, c in enumerate(codes)]
    name = next(iter(parts.values()))[2].name if parts else None
    return (
        list(parts),
        pd.Index(list(index), name=name, dtype=object),
        np.concatenate([v[0] for v in parts.values()]) if parts else np.zeros(0, np.int64),
        np.concatenate([v[1] for v in parts.values()]) if parts else np.zeros(0, np.int64),
        np.concatenate(cells) if parts else np.zeros(0, np.int64),
    )


def _by_group_per_level(
    names: list[str], pos_label, levels: Mapping[int, tuple[np.ndarray, np.ndarray, pd.Series]]
) -> dict[int, pd.DataFrame]:
    """Each level's ``MetricFrame.by_group`` (index group, one column per metric).

    The values of fairlearn's MetricFrame over the stacked levels
    (:func:`_stacked_frame` of :func:`_metric_functions`), read from every
    (level, group) cell's confusion counts
    (:func:`analysis.confusion_counts.cell_metrics`: the same numbers, without
    one sklearn call per cell); fairlearn itself where those do not apply
    (labels that are not integers, a binary rate that fairlearn refuses).
    Cells of groups absent from a level are NaN, as after reindexing a frame
    of the level alone.
    """
    stacked = _stacked_cells(levels)
    if stacked is not None:
        keys, groups, yt, yp, cells = stacked
        if not keys:
            return {}
        counts = cell_counts(yt, yp, cells, len(keys) * len(groups))
        values = None if counts is None else cell_metrics(names, counts, pos_label)
        if values is not None:
            values = values.reshape(len(keys), len(groups), len(names))  # (L, G, M)
            return {lv: pd.DataFrame(values[i], index=groups, columns=names) for i, lv in enumerate(keys)}
    frame = _stacked_frame(_metric_functions(names, pos_label), levels)
    if frame is None:
        return {}
    return {lv: frame.by_group.xs(lv, level=0) for lv in frame.by_group.index.unique(level=0)}


def _metric_functions(names: Sequence[str], pos_label) -> dict[str, Callable]:
    table = {
        "accuracy": skm.accuracy_score,
        "balanced_accuracy": skm.balanced_accuracy_score,
        "recall_macro": partial(skm.recall_score, average="macro", zero_division=0.0),
        "selection_rate": partial(selection_rate, pos_label=pos_label),
        "true_positive_rate": partial(_tpr, pos_label=pos_label),
        "false_positive_rate": partial(_fpr, pos_label=pos_label),
    }
    unknown = set(names) - set(table)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; known: {sorted(table)}")
    return {n: _quiet(table[n]) for n in names}


def _batch_metric(name: str, yt: np.ndarray, yp: np.ndarray, n_classes: int, pos: int) -> np.ndarray:
    """A metric on B resamples at once: ``yt, yp`` int codes of shape (B, n) -> (B,).

    Mirrors the sklearn / fairlearn definitions used for the point estimates
    (the tests hold each row equal to them).
    """
    b, n = yt.shape
    if name == "accuracy":
        return _metric_from_counts(name, n, (yt == yp).sum(axis=1))
    if name == "selection_rate":
        return _metric_from_counts(name, n, (yp == pos).sum(axis=1))
    if name in ("true_positive_rate", "false_positive_rate"):
        want = yt == pos if name == "true_positive_rate" else yt != pos
        return _metric_from_counts(name, n, (want & (yp == pos)).sum(axis=1), want.sum(axis=1))
    offset = (np.arange(b) * n_classes)[:, None]  # (B, 1)

    def counts(codes: np.ndarray) -> np.ndarray:  # (B, C)
        return np.bincount((offset + codes).ravel(), minlength=b * n_classes).reshape(b, n_classes)

    predicted = counts(yp) if name == "recall_macro" else None
    return _metric_from_counts(name, n, _hits(yt, yp, offset, b, n_classes), counts(yt), predicted)


def _hits(yt: np.ndarray, yp: np.ndarray, offset: np.ndarray, b: int, n_classes: int) -> np.ndarray:
    # True positives per class: count the true class of correctly predicted samples.
    idx = (offset + yt)[yt == yp]
    return np.bincount(idx, minlength=b * n_classes).reshape(b, n_classes)


def _metric_from_counts(
    name: str, n: int, hit: np.ndarray, den: np.ndarray | None = None, predicted: np.ndarray | None = None
) -> np.ndarray:
    """A metric on B resamples of n samples from their whole-number counts -> (B,).

    Parameters
    ----------
    name : str
    n : int
        Samples per resample.
    hit : ndarray, shape (B,) or (B, C)
        Correct predictions (accuracy), positive predictions (selection rate),
        true (TPR) or false (FPR) positives; per class, correct predictions
        (balanced accuracy, macro recall).
    den : ndarray, shape (B,) or (B, C), optional
        Positive (TPR) or negative (FPR) labels; per class, the labels.
    predicted : ndarray, shape (B, C), optional
        Predictions per class (macro recall).
    """
    b = hit.shape[0]
    if name in ("accuracy", "selection_rate"):
        return hit / n
    if name in ("true_positive_rate", "false_positive_rate"):
        return np.divide(hit, den, out=np.full(b, np.nan), where=den > 0)
    recall = np.divide(hit, den, out=np.zeros(hit.shape), where=den > 0)  # (B, C)
    if name == "balanced_accuracy":
        return recall.sum(axis=1) / (den > 0).sum(axis=1)
    if name == "recall_macro":
        present = (den > 0) | (predicted > 0)
        return recall.sum(axis=1) / present.sum(axis=1)
    raise ValueError(f"unknown metric {name!r}")


def _counted_metric(
    name: str, counts: np.ndarray, yt: np.ndarray, yp: np.ndarray, n_classes: int, pos: int
) -> np.ndarray:
    """:func:`_batch_metric` of the resamples ``counts`` for several prediction columns at once.

    Parameters
    ----------
    name : str
    counts : ndarray of float64, shape (B, n)
        :func:`analysis.signals.resample_counts` of the resampling indices.
    yt : ndarray of int, shape (n,)
        Label codes.
    yp : ndarray of int, shape (n, L)
        Prediction codes of L models (levels) on the same samples.
    n_classes, pos
        As in :func:`_batch_metric`.

    Returns
    -------
    ndarray of float64, shape (B, L)
        Column ``l`` equal bit for bit to :func:`_batch_metric` of the gathered
        resamples of ``yt`` and ``yp[:, l]``: every count is a sum of whole
        numbers below 2**53, exact in any order (one product, no gather of
        B * n * L codes).
    """
    n, n_models = yp.shape
    if name in ("accuracy", "selection_rate"):
        hit = counts @ (yp == yt[:, None] if name == "accuracy" else yp == pos).astype(np.float64)  # (B, L)
        return _metric_from_counts(name, n, hit)
    if name in ("true_positive_rate", "false_positive_rate"):
        want = yt == pos if name == "true_positive_rate" else yt != pos  # (n,)
        den = counts @ want.astype(np.float64)  # (B,)
        hit = counts @ (want[:, None] & (yp == pos)).astype(np.float64)  # (B, L)
        return np.stack([_metric_from_counts(name, n, hit[:, i], den) for i in range(n_models)], axis=1)
    classes = np.arange(n_classes)
    true = yt[:, None] == classes  # (n, C)
    den = counts @ true.astype(np.float64)  # (B, C)
    out = []
    for i in range(n_models):  # one model at a time: (n, C) indicators, not (n, L, C)
        hit = counts @ (true & (yp[:, i] == yt)[:, None]).astype(np.float64)  # (B, C)
        predicted = None
        if name == "recall_macro":
            predicted = counts @ (yp[:, i, None] == classes).astype(np.float64)  # (B, C)
        out.append(_metric_from_counts(name, n, hit, den, predicted))
    return np.stack(out, axis=1)


def wilson_interval(successes, trials, ci: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion (no continuity correction).

    Equal to ``scipy.stats.binomtest(k, n).proportion_ci(ci, method="wilson")``;
    unlike a bootstrap or the Wald interval it keeps a positive width at 0 / n
    and n / n.

    Parameters
    ----------
    successes, trials : array_like of float
        ``k`` and ``n`` (broadcast together); ``k`` may be fractional
        (``value * n``).
    ci : float
        Coverage.

    Returns
    -------
    low, high : ndarray of float64
        NaN where ``n = 0``.
    """
    from scipy.stats import norm

    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = float(norm.ppf(1 - (1 - ci) / 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        den = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / den
        half = z / den * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
        low, high = np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)
    bad = ~(n > 0)
    return np.where(bad, np.nan, low), np.where(bad, np.nan, high)


def _metric_count(name: str, yt: np.ndarray, pos) -> int:
    """The number of samples a metric's value rests on, in one group (labels ``yt``)."""
    if name == "true_positive_rate":
        return int(np.sum(yt == pos))
    if name == "false_positive_rate":
        return int(np.sum(yt != pos))
    if name in ("balanced_accuracy", "recall_macro"):
        _, counts = np.unique(yt, return_counts=True)
        return int(counts.min()) if counts.size else 0
    return int(yt.size)


# ----------------------------------------------------------------------------- groups


def group_labels(predictions: pd.DataFrame, group_by: str | Sequence[str]) -> pd.Series:
    """The group of each sample, as strings; several columns give their intersection.

    Parameters
    ----------
    predictions : DataFrame
    group_by : str or sequence of str
        One group column, or several whose values are joined by ``" & "``
        (e.g. ``("sex", "race")`` gives groups like ``"F & white"``).

    Returns
    -------
    Series of str, shape (n,)
        Named after the column(s) (``"sex & race"``); missing values become ``"<NA>"``.
    """
    cols = [group_by] if isinstance(group_by, str) else list(group_by)
    if not cols:
        raise ValueError("group_by names no column")
    missing = [c for c in cols if c not in predictions.columns]
    if missing:
        raise KeyError(f"no group column(s) {missing} in predictions")
    # Each column's distinct values are turned into strings once, and the
    # samples take their string by code: per-element str() on a 16k-row table
    # at every level cost more than the metrics.
    codes, names = zip(*(_column_codes(predictions[c]) for c in cols), strict=True)
    if len(cols) == 1:
        code, text = codes[0], names[0]
    else:
        flat = np.ravel_multi_index(codes, [len(t) for t in names])  # (N,)
        code, combos = pd.factorize(flat)
        text = np.array(
            [
                _JOIN.join(t[i] for t, i in zip(names, ix, strict=True))
                for ix in zip(*np.unravel_index(combos, [len(t) for t in names]), strict=True)
            ],
            dtype=object,
        )
    # The distinct strings take the dtype pandas infers for strings (as the
    # per-element construction did), then the samples take theirs by code.
    values = pd.Series(text).array.take(code) if len(code) else text[code]  # no rows: no inference
    return pd.Series(values, index=predictions.index, name=_JOIN.join(cols))


def _column_codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """One group column as codes into its distinct values' strings (``"<NA>"`` for missing).

    Returns
    -------
    codes : ndarray of int, shape (N,)
    names : ndarray of object (str), shape (K,)
    """
    if column.dtype == object:
        # Object columns may hold equal-hashing values with different strings (1 and 1.0): per element.
        text = column.where(column.notna(), "<NA>").astype(str).to_numpy(dtype=object)
        codes, uniques = pd.factorize(text)
        return codes, np.asarray(uniques, dtype=object)
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    u = pd.Series(uniques)
    names = u.astype(object).where(u.notna(), "<NA>").astype(str).to_numpy(dtype=object)
    return np.where(codes < 0, names.size, codes), np.append(names, "<NA>")


def _expected_groups(predictions: pd.DataFrame, group_by: str | Sequence[str]) -> list[str]:
    cols = [group_by] if isinstance(group_by, str) else list(group_by)
    cats = []
    for c in cols:
        if isinstance(predictions[c].dtype, pd.CategoricalDtype):
            cats.append([str(v) for v in predictions[c].cat.categories])
        else:
            return []
    combos = cats[0]
    for more in cats[1:]:
        combos = [a + _JOIN + b for a in combos for b in more]
    return combos


def _is_binary(predictions: pd.DataFrame, label_col: str, pred_col: str) -> bool:
    # Labels and predictions within {0, 1}; an empty table is not taken as binary.
    values = set(
        pd.unique(pd.concat([predictions[label_col], predictions[pred_col]], ignore_index=True)).tolist()
    )
    return bool(values) and values <= {0, 1}


def group_metrics(
    predictions: pd.DataFrame,
    group_by: str | Sequence[str],
    *,
    pred_col: str = "pred",
    label_col: str = "label",
    metrics: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    binary: bool | None = None,
    pos_label: int = 1,
    min_count: int = 30,
    n_boot: int = 1000,
    ci: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Per-group metrics with counts and bootstrap confidence intervals.

    Parameters
    ----------
    predictions : DataFrame
        One row per sample with ``label_col``, ``pred_col`` and the group column(s).
    group_by : str or sequence of str
        Group column, or several for their intersection (:func:`group_labels`).
    pred_col, label_col : str
        Predicted and true class columns (``"pred_oracle"`` etc. for another routing).
    metrics : sequence of str, optional
        Default :data:`METRICS`, plus :data:`BINARY_METRICS` for a binary task.
    groups : sequence of str, optional
        Groups expected even if absent from the table (they get ``n = 0``).
    binary : bool, optional
        Whether the task has two classes; default: labels and predictions
        all in {0, 1} (and the table not empty).
    pos_label : int
        Positive class of a binary task.
    min_count : int
        Groups whose metric rests on fewer samples (``n_metric``: positives for
        TPR, negatives for FPR, ...) are flagged ``small``.
    n_boot : int
        Bootstrap resamples per group for the non-proportion metrics (0: no
        bootstrap; proportions still get their closed-form Wilson interval).
    ci : float
        Coverage of the intervals.
    random_state : int
        Seed of the bootstrap.

    Returns
    -------
    DataFrame
        Columns :data:`GROUP_COLUMNS` (module docstring); groups sorted by name,
        metrics in the order asked.
    """
    if binary is None:
        binary = _is_binary(predictions, label_col, pred_col)
    names = list(metrics) if metrics is not None else [*METRICS, *(BINARY_METRICS if binary else ())]
    _metric_functions(names, pos_label)  # unknown names raise here
    g = group_labels(predictions, group_by)
    values = None
    if len(g):
        arrays = {0: (predictions[label_col].to_numpy(), predictions[pred_col].to_numpy(), g)}
        values = _by_group_per_level(names, pos_label, arrays)[0]
    return _group_table(
        predictions,
        group_by,
        g,
        values,
        names,
        pred_col=pred_col,
        label_col=label_col,
        groups=groups,
        pos_label=pos_label,
        min_count=min_count,
        n_boot=n_boot,
        ci=ci,
        random_state=random_state,
    )


def _group_table(
    predictions: pd.DataFrame,
    group_by: str | Sequence[str],
    g: pd.Series,
    values: pd.DataFrame | None,
    names: list[str],
    *,
    pred_col: str,
    label_col: str,
    groups: Sequence[str] | None,
    pos_label: int,
    min_count: int,
    n_boot: int,
    ci: float,
    random_state: int,
) -> pd.DataFrame:
    """:func:`group_metrics` of one table whose group labels and MetricFrame values are known.

    Parameters
    ----------
    g : Series of str, shape (N,)
        :func:`group_labels` of ``predictions``.
    values : DataFrame or None
        fairlearn ``MetricFrame.by_group`` of ``names`` (index group; may hold
        more groups, NaN there); None when the table is empty.
    names : list of str
    Other parameters as in :func:`group_metrics`.
    """
    y_true = predictions[label_col].to_numpy()
    y_pred = predictions[pred_col].to_numpy()
    expected = sorted(set(g.unique()) | set(groups or ()) | set(_expected_groups(predictions, group_by)))

    if values is not None:
        by_group = values.reindex(expected)
    else:
        by_group = pd.DataFrame(np.nan, index=expected, columns=names)
    # Plain arrays (E groups, M metrics) rather than frames written cell by cell with .loc:
    # the page builds one table per level.
    value = np.zeros((len(expected), len(names)))  # (E, M)
    for j, m in enumerate(names):
        value[:, j] = pd.to_numeric(by_group[m], errors="coerce").to_numpy(dtype=np.float64)
    lo = np.full(value.shape, np.nan)
    hi = np.full(value.shape, np.nan)
    kind = np.full(value.shape, "", dtype=object)
    gcodes, uniques = pd.factorize(g)  # (N,): comparing codes, not strings, per group
    code_of = {name: i for i, name in enumerate(uniques)}
    sizes = np.bincount(gcodes[gcodes >= 0], minlength=len(uniques))
    counts = [int(sizes[code_of[name]]) if name in code_of else 0 for name in expected]  # (E,)
    n_metric = np.zeros(value.shape, dtype=np.int64)
    for i, name in enumerate(expected):
        yt_g = y_true[gcodes == code_of.get(name, -2)]
        for j, m in enumerate(names):
            n_metric[i, j] = _metric_count(m, yt_g, pos_label)
    boot_names = [m for m in names if m not in PROPORTIONS]
    if n_boot > 0 and len(g) and boot_names:
        q = [(1 - ci) / 2, 1 - (1 - ci) / 2]
        labels, codes = sorted_codes(np.concatenate([y_true, y_pred]))
        yt_all, yp_all = codes[: len(y_true)], codes[len(y_true) :]
        pos = int(np.searchsorted(labels, pos_label)) if pos_label in labels else -1
        rng = np.random.default_rng(random_state)
        for i, name in enumerate(expected):
            members = np.flatnonzero(gcodes == code_of.get(name, -2))
            if members.size == 0:
                continue
            idx = members[rng.integers(0, members.size, size=(n_boot, members.size))]  # (B, n_g)
            step = max(1, _BOOT_CELLS // members.size)
            for m in boot_names:
                j = names.index(m)
                vals = np.concatenate(
                    [
                        _batch_metric(
                            m, yt_all[idx[s : s + step]], yp_all[idx[s : s + step]], labels.size, pos
                        )
                        for s in range(0, n_boot, step)
                    ]
                )
                if np.isfinite(vals).any():
                    lo[i, j], hi[i, j] = np.nanquantile(vals, q)
                    kind[i, j] = "bootstrap"
    for j, m in enumerate(names):
        v = value[:, j]
        n_m = n_metric[:, j].astype(np.float64)
        w_lo, w_hi = wilson_interval(v * n_m, n_m, ci)
        if m in PROPORTIONS:
            use = np.isfinite(v)
            label_kind = "wilson"
        else:
            # no spread at a boundary: the bootstrap says nothing; fall back to Wilson
            width = hi[:, j] - lo[:, j]
            use = np.isfinite(v) & (kind[:, j] == "bootstrap") & (width <= 1e-12)
            use &= (v <= 1e-12) | (v >= 1 - 1e-12)
            label_kind = "wilson (degenerate bootstrap)"
        lo[use, j], hi[use, j] = w_lo[use], w_hi[use]
        kind[use, j] = label_kind

    rows = []
    label = g.name
    for i, name in enumerate(expected):
        n = counts[i]
        for j, m in enumerate(names):
            n_m = int(n_metric[i, j])
            rows.append(
                (
                    label,
                    name,
                    n,
                    n_m,
                    n_m < min_count,
                    m,
                    value[i, j],
                    lo[i, j],
                    hi[i, j],
                    kind[i, j] or "none",
                )
            )
    out = pd.DataFrame(rows, columns=GROUP_COLUMNS)
    for c in ("value", "ci_low", "ci_high"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(np.float64)
    out["n"] = out["n"].astype(np.int64)
    out["n_metric"] = out["n_metric"].astype(np.int64)
    out["small"] = out["small"].astype(bool)
    return out


# ----------------------------------------------------------------------------- against sparsity


def _aligned_levels(
    predictions_by_level: Mapping[int, pd.DataFrame], label_col: str, pred_col: str
) -> dict[int, pd.DataFrame]:
    """Every level's predictions in one sample order (by ``sample`` when present)."""
    out = {}
    ref = None
    for lv, p in sorted(predictions_by_level.items()):
        if "sample" in p.columns:
            p = p.sort_values("sample", kind="stable").reset_index(drop=True)
            key = p["sample"].to_numpy()
        else:
            key = np.arange(len(p))
        if ref is None:
            ref = key
        elif len(key) != len(ref) or not np.array_equal(key, ref):
            raise ValueError(
                f"level {lv} holds other evaluation samples than level {min(predictions_by_level)}: "
                "a joint bootstrap needs the same samples at every level"
            )
        out[lv] = p
    return out


def joint_bootstrap(
    predictions_by_level: Mapping[int, pd.DataFrame],
    group_by: str | Sequence[str],
    metric: str,
    *,
    pred_col: str = "pred",
    label_col: str = "label",
    pos_label: int = 1,
    n_boot: int = 400,
    random_state: int = 0,
) -> tuple[list[str], dict[int, np.ndarray]]:
    """One metric per group on stratified resamples shared by every level.

    Each resample draws, within every group, as many samples as the group has,
    with replacement; the same sample indices are used at every level, so a
    group's drop from the dense level is a paired difference.

    Parameters
    ----------
    predictions_by_level : mapping of int to DataFrame
        One method's predictions per level, on the same evaluation samples.
    group_by : str or sequence of str
    metric : str
    pred_col, label_col, pos_label
        As in :func:`group_metrics`.
    n_boot : int
        Number of resamples B.
    random_state : int

    Returns
    -------
    groups : list of str
        Group names (sorted), G of them.
    values : dict of int to ndarray of float64, shape (B, G)
        The metric of every group on every resample, per level (NaN where undefined).
    """
    levels = _aligned_levels(predictions_by_level, label_col, pred_col)
    first = levels[min(levels)]
    g = group_labels(first, group_by).to_numpy()
    groups = sorted(set(g))
    labels, codes = sorted_codes(
        np.concatenate([first[label_col].to_numpy(), *[p[pred_col].to_numpy() for p in levels.values()]])
    )
    n = len(first)
    yt = codes[:n]
    yp = {lv: codes[n * (i + 1) : n * (i + 2)] for i, lv in enumerate(levels)}
    pos = int(np.searchsorted(labels, pos_label)) if pos_label in labels else -1
    rng = np.random.default_rng(random_state)
    out = {lv: np.full((n_boot, len(groups)), np.nan) for lv in levels}
    yp_all = np.stack([yp[lv] for lv in levels], axis=1)  # (n, L)
    counted = metric in PROPORTIONS or labels.size <= _COUNTED_CLASSES
    for j, name in enumerate(groups):
        members = np.flatnonzero(g == name)
        # The draws (and their batches) of the gathered version, which held b * n_g * L codes.
        step = max(1, _BOOT_CELLS // (members.size * max(1, len(levels))))
        for s0 in range(0, n_boot, step):
            b = min(step, n_boot - s0)
            draw = rng.integers(0, members.size, size=(b, members.size))  # (b, n_g) into members
            if counted:
                vals = _counted_metric(
                    metric, resample_counts(draw), yt[members], yp_all[members], labels.size, pos
                )  # (b, L)
            else:
                idx = members[draw]
                t = yt[idx]
                vals = np.stack([_batch_metric(metric, t, yp[lv][idx], labels.size, pos) for lv in levels], 1)
            for i, lv in enumerate(levels):
                out[lv][s0 : s0 + b, j] = vals[:, i]
    return groups, out


def _percentile(vals: np.ndarray, ci: float) -> tuple[float, float]:
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(vals, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return float(lo), float(hi)


def _level_tables(
    predictions_by_level: Mapping[int, pd.DataFrame],
    group_by: str | Sequence[str],
    *,
    pred_col: str = "pred",
    label_col: str = "label",
    metrics: Sequence[str] | None = None,
    groups: Sequence[str] | None = None,
    binary: bool | None = None,
    pos_label: int = 1,
    min_count: int = 30,
    n_boot: int = 1000,
    ci: float = 0.95,
    random_state: int = 0,
    labels: Mapping[int, pd.Series] | None = None,
) -> dict[int, pd.DataFrame]:
    """:func:`group_metrics` of every level, from one MetricFrame over the stacked levels.

    The same tables as calling :func:`group_metrics` level by level (parameters
    as there), but fairlearn's MetricFrame is built once, with the level as a
    control feature (:func:`_stacked_frame`), per set of metrics (levels
    differ only when ``metrics`` and ``binary`` are None and a level is not binary).
    ``labels`` (level -> :func:`group_labels` of that level) skips recomputing
    labels the caller already has.

    Returns
    -------
    dict of int to DataFrame
        Per level, in sorted order, columns :data:`GROUP_COLUMNS`.
    """
    if labels is None:
        labels = {lv: group_labels(p, group_by) for lv, p in predictions_by_level.items()}
    names = {}
    for lv, p in predictions_by_level.items():
        is_binary = binary if binary is not None else _is_binary(p, label_col, pred_col)
        names[lv] = (
            list(metrics) if metrics is not None else [*METRICS, *(BINARY_METRICS if is_binary else ())]
        )
    values: dict[int, pd.DataFrame] = {}
    for key in {tuple(n) for n in names.values()}:
        _metric_functions(list(key), pos_label)  # unknown names raise here
        arrays = {
            lv: (p[label_col].to_numpy(), p[pred_col].to_numpy(), labels[lv])
            for lv, p in predictions_by_level.items()
            if tuple(names[lv]) == key
        }
        values.update(_by_group_per_level(list(key), pos_label, arrays))
    return {
        lv: _group_table(
            p,
            group_by,
            labels[lv],
            values.get(lv),
            names[lv],
            pred_col=pred_col,
            label_col=label_col,
            groups=groups,
            pos_label=pos_label,
            min_count=min_count,
            n_boot=n_boot,
            ci=ci,
            random_state=random_state,
        )
        for lv, p in sorted(predictions_by_level.items())
    }


def group_drops(
    predictions_by_level: Mapping[int, pd.DataFrame],
    sparsity: Mapping[int, float],
    group_by: str | Sequence[str],
    *,
    dense_level: int = 0,
    dense: pd.DataFrame | None = None,
    n_boot_drop: int = 400,
    ci: float = 0.95,
    **kwargs,
) -> pd.DataFrame:
    """Each group's metric at every level and its drop from the dense model, with intervals.

    The drop is ``psi_g = m_dense(g) - m_level(g)`` (positive = the pruned
    model is worse, for metrics where higher is better). Its interval is a
    percentile bootstrap over resamples shared by the dense and the pruned
    level (:func:`joint_bootstrap`), so it reflects the paired difference.

    Parameters
    ----------
    predictions_by_level : mapping of int to DataFrame
        One method's predictions per level; must contain ``dense_level``.
    sparsity : mapping of int to float
        Sparsity of each level.
    group_by : str or sequence of str
    dense_level : int
        Reference level (0 = the dense model) when ``dense`` is None.
    dense : DataFrame, optional
        Predictions of the run's dense reference on the same samples
        (:func:`analysis.levels.dense_reference`, e.g. IMP level 0 for RTL,
        whose own level 0 is jointly retrained): the drops are measured from
        it, its resamples shared with every level's. It adds no output row.
    n_boot_drop : int
        Joint resamples for the drop intervals (0: none, NaN bounds).
    ci : float
        Coverage of every interval.
    **kwargs
        Passed to :func:`group_metrics` (``n_boot`` defaults to 0 here: the
        per-level values get Wilson intervals where they are proportions).

    Returns
    -------
    DataFrame
        Columns ``level, sparsity`` then those of :func:`group_metrics`, then
        ``dense_value``, ``drop``, ``drop_ci_low`` and ``drop_ci_high``.
    """
    if dense is not None:
        predictions_by_level, dense_level = _with_reference(predictions_by_level, dense)
    if dense_level not in predictions_by_level:
        raise ValueError(f"no dense level {dense_level} among {sorted(predictions_by_level)}")
    kwargs.setdefault("n_boot", 0)
    kwargs["ci"] = ci
    # Every level reports the same groups, so drops align even if a group empties.
    labels = {lv: group_labels(p, group_by) for lv, p in predictions_by_level.items()}
    all_groups = set().union(*(set(g.unique()) for g in labels.values()))
    kwargs["groups"] = sorted(all_groups | set(kwargs.get("groups") or ()))
    tables = _level_tables(predictions_by_level, group_by, labels=labels, **kwargs)
    dense = tables[dense_level].set_index(["group", "metric"])["value"]
    boots = {}
    if n_boot_drop > 0:
        for m in tables[dense_level]["metric"].unique():
            boots[m] = joint_bootstrap(
                predictions_by_level,
                group_by,
                m,
                pred_col=kwargs.get("pred_col", "pred"),
                label_col=kwargs.get("label_col", "label"),
                pos_label=kwargs.get("pos_label", 1),
                n_boot=n_boot_drop,
                random_state=kwargs.get("random_state", 0),
            )
    frames = []
    for lv, t in tables.items():
        if lv == _REFERENCE:
            continue
        t = t.copy()
        t.insert(0, "sparsity", float(sparsity[lv]))
        t.insert(0, "level", int(lv))
        t["dense_value"] = dense.reindex(pd.MultiIndex.from_frame(t[["group", "metric"]])).to_numpy()
        t["drop"] = t["dense_value"] - t["value"]
        lo = np.full(len(t), np.nan)
        hi = np.full(len(t), np.nan)
        for i, (grp, m) in enumerate(zip(t["group"], t["metric"], strict=True)):
            if m in boots and grp in boots[m][0]:
                j = boots[m][0].index(grp)
                lo[i], hi[i] = _percentile(boots[m][1][dense_level][:, j] - boots[m][1][lv][:, j], ci)
        t["drop_ci_low"], t["drop_ci_high"] = lo, hi
        frames.append(t)
    return pd.concat(frames, ignore_index=True)


def _stat_rows(level, sp, group_by, metric, stats: list[tuple]) -> list[tuple]:
    return [
        (
            level,
            sp,
            group_by,
            metric,
            st[0],
            float(st[1]),
            st[2],
            *(st[3:] if len(st) > 3 else (np.nan, np.nan)),
        )
        for st in stats
    ]


def _parity_differences(
    levels: Mapping[int, tuple[np.ndarray, np.ndarray, pd.Series]], min_count: int
) -> dict[int, tuple[float, float]]:
    """Demographic parity and equalized odds differences of every level, among groups of ``min_count``.

    fairlearn's ``demographic_parity_difference`` is ``MetricFrame(selection_rate)
    .difference()`` and ``equalized_odds_difference`` the larger of the
    ``difference()`` of ``true_positive_rate`` and ``false_positive_rate`` (their
    default ``pos_label``), per level. The three rates of every (level, group)
    cell are read from its confusion counts
    (:func:`analysis.confusion_counts.parity_rates`, fairlearn's values);
    fairlearn's MetricFrame over the stacked levels (:func:`_parity_frame`) where
    they do not apply. ``difference()`` is ``max - min`` over the groups.

    Parameters
    ----------
    levels : mapping of int to (y_true, y_pred, groups)
        Arrays of shape (N_level,) per level.
    min_count : int
        Groups with fewer samples at a level are left out of that level's differences.

    Returns
    -------
    dict of int to (float, float)
        ``(demographic parity, equalized odds)`` per level that has a group of ``min_count``.
    """
    stacked = _stacked_cells(levels)
    if stacked is None:
        return _parity_frame(levels, min_count)
    keys, groups, yt, yp, cells = stacked
    if not keys:
        return {}
    n_groups = len(groups)
    counts = cell_counts(yt, yp, cells, len(keys) * n_groups)
    rates = None if counts is None else parity_rates(counts)
    if rates is None:
        return _parity_frame(levels, min_count)
    size = np.bincount(cells, minlength=len(keys) * n_groups)  # (L * G,)
    out = {}
    for i, lv in enumerate(keys):
        cell = slice(i * n_groups, (i + 1) * n_groups)
        big = (size[cell] > 0) & (size[cell] >= min_count)  # the groups kept at this level
        if big.any():
            r = rates[cell][big]  # (G kept, 3): selection rate, TPR, FPR
            diff = r.max(axis=0) - r.min(axis=0)
            out[lv] = (diff[0], max(diff[1], diff[2]))
    return out


def _parity_frame(
    levels: Mapping[int, tuple[np.ndarray, np.ndarray, pd.Series]], min_count: int
) -> dict[int, tuple[float, float]]:
    """:func:`_parity_differences` from fairlearn's MetricFrame over the stacked levels."""
    big = {}
    for lv, (yt, yp, g) in levels.items():
        keep = (g.map(g.value_counts()) >= min_count).to_numpy()  # (N,)
        if keep.any():
            big[lv] = (yt[keep], yp[keep], g[keep])
    fns = {"selection_rate": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = _stacked_frame(fns, big)
        if frame is None:
            return {}
        diff = frame.difference(method="between_groups")  # (levels, 3)
    return {lv: (diff.loc[lv, "selection_rate"], max(diff.loc[lv, ["tpr", "fpr"]])) for lv in diff.index}


def fairness_gaps(
    predictions_by_level: Mapping[int, pd.DataFrame],
    sparsity: Mapping[int, float],
    group_by: str | Sequence[str],
    *,
    dense_level: int = 0,
    dense: pd.DataFrame | None = None,
    pred_col: str = "pred",
    label_col: str = "label",
    metrics: Sequence[str] | None = None,
    binary: bool | None = None,
    pos_label: int = 1,
    min_count: int = 30,
    n_boot: int = 400,
    ci: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Between-group gaps and the spread of per-group drops, level by level, with intervals.

    Only groups whose metric rests on at least ``min_count`` samples
    (``n_metric`` of :func:`group_metrics`: e.g. positives for TPR) enter a
    metric's statistics; for the parity differences, groups of at least
    ``min_count`` samples.

    Parameters
    ----------
    predictions_by_level : mapping of int to DataFrame
        One method's predictions per level; must contain ``dense_level``.
    sparsity : mapping of int to float
    group_by : str or sequence of str
    dense_level : int
    dense : DataFrame, optional
        The dense reference's predictions, as in :func:`group_drops`.
    pred_col, label_col, metrics, binary, pos_label, min_count
        As in :func:`group_metrics`.
    n_boot : int
        Joint stratified resamples (:func:`joint_bootstrap`) for the intervals
        of ``difference``, ``ratio``, ``group_min``, ``group_max``, ``worst``
        (0: none) and of each group's drop.
    ci : float
    random_state : int

    Returns
    -------
    DataFrame
        Tidy, columns :data:`GAP_COLUMNS`. Statistics per metric:

        - ``difference``, ``ratio``: between the retained groups, max - min and
          min / max of fairlearn ``MetricFrame.by_group`` (fairlearn's
          ``difference()`` / ``ratio()`` over those groups);
        - ``group_min``, ``group_max``: the extreme group values (``group`` names the group);
        - ``worst``: the lowest value (highest for FPR), for metrics with a direction;
        - ``drop_max``, ``drop_min``: the largest and smallest drop from the dense
          model ``psi_g = m_dense(g) - m(g)`` (``group`` names the group);
        - ``drop_spread``: ``drop_max - drop_min``; ``drop_std``: population std of the drops.

        ``ci_low, ci_high`` bound the statistic (percentile bootstrap, the same
        groups in every resample); NaN for the drop statistics, whose group
        changes between resamples (see :func:`group_drops` for each group's drop).
        For a binary task, also metric ``demographic_parity`` and
        ``equalized_odds``, statistic ``difference`` (fairlearn's
        ``demographic_parity_difference`` / ``equalized_odds_difference``).
        ``group`` is ``None`` where no single group is behind the value.
    """
    if dense is not None:
        predictions_by_level, dense_level = _with_reference(predictions_by_level, dense)
    lv0 = predictions_by_level.get(dense_level)
    if lv0 is None:
        raise ValueError(f"no dense level {dense_level} among {sorted(predictions_by_level)}")
    if binary is None:
        binary = _is_binary(lv0, label_col, pred_col)
    names = list(metrics) if metrics is not None else [*METRICS, *(BINARY_METRICS if binary else ())]
    drops = group_drops(
        predictions_by_level,
        sparsity,
        group_by,
        dense_level=dense_level,
        pred_col=pred_col,
        label_col=label_col,
        metrics=names,
        binary=binary,
        pos_label=pos_label,
        min_count=min_count,
        n_boot_drop=0,
    )
    boots = {
        m: joint_bootstrap(
            predictions_by_level,
            group_by,
            m,
            pred_col=pred_col,
            label_col=label_col,
            pos_label=pos_label,
            n_boot=n_boot,
            random_state=random_state,
        )
        for m in (names if n_boot > 0 else [])
    }
    label = group_labels(lv0, group_by).name
    arrays = {
        lv: (p[label_col].to_numpy(), p[pred_col].to_numpy(), group_labels(p, group_by))
        for lv, p in predictions_by_level.items()
        if lv != _REFERENCE
    }
    parity = _parity_differences(arrays, min_count) if binary else {}
    rows: list[tuple] = []
    for lv, (_, _, g) in sorted(arrays.items()):
        sp = float(sparsity[lv])
        d_lv = drops[drops["level"] == lv]
        if not len(g):
            continue
        for m in names:
            info = d_lv[d_lv["metric"] == m].set_index("group")
            keep = info.index[~info["small"]]
            # group_drops' values are fairlearn MetricFrame.by_group of this level
            vals = info["value"].astype(float).reindex(keep).dropna()
            if vals.empty:
                continue
            dm = info.loc[vals.index, "drop"].dropna()
            bvals = None
            if m in boots:
                bgroups, bv = boots[m]
                bvals = bv[lv][:, [bgroups.index(x) for x in vals.index]]  # (B, G retained)

            def interval(fn, bvals=bvals) -> tuple[float, float]:
                if bvals is None:
                    return float("nan"), float("nan")
                with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return _percentile(fn(bvals), ci)

            def one_group(fn, group, vals=vals, m=m, info=info, interval=interval) -> tuple[float, float]:
                # A resampled extreme with no spread at 0 or 1 (every resample perfect):
                # the Wilson interval of that group instead, which keeps its width.
                lo, hi = interval(fn)
                v = float(vals[group])
                if m in PROPORTIONS and np.isfinite(lo) and hi - lo <= 1e-12 and (v <= 0 or v >= 1):
                    n_m = float(info.loc[group, "n_metric"])
                    w_lo, w_hi = wilson_interval(v * n_m, n_m, ci)
                    lo, hi = float(w_lo), float(w_hi)
                return lo, hi

            hi_v, lo_v = vals.max(), vals.min()
            stats: list[tuple] = [
                ("difference", hi_v - lo_v, None, *interval(lambda b: np.nanmax(b, 1) - np.nanmin(b, 1))),
                (
                    "ratio",
                    lo_v / hi_v if hi_v > 0 else np.nan,
                    None,
                    *interval(lambda b: np.nanmin(b, 1) / np.nanmax(b, 1)),
                ),
                ("group_min", lo_v, vals.idxmin(), *one_group(lambda b: np.nanmin(b, 1), vals.idxmin())),
                ("group_max", hi_v, vals.idxmax(), *one_group(lambda b: np.nanmax(b, 1), vals.idxmax())),
            ]
            if m in _HIGHER_IS_BETTER:
                up = _HIGHER_IS_BETTER[m]
                worst = vals.idxmin() if up else vals.idxmax()
                fn = (lambda b: np.nanmin(b, 1)) if up else (lambda b: np.nanmax(b, 1))
                stats.append(("worst", vals[worst], worst, *one_group(fn, worst)))
            if len(dm):
                stats += [
                    ("drop_max", dm.max(), dm.idxmax()),
                    ("drop_min", dm.min(), dm.idxmin()),
                    ("drop_spread", dm.max() - dm.min(), None),
                    ("drop_std", dm.std(ddof=0), None),
                ]
            rows += _stat_rows(lv, sp, label, m, stats)
        if lv in parity:
            dp, eo = parity[lv]
            rows += _stat_rows(lv, sp, label, "demographic_parity", [("difference", dp, None)])
            rows += _stat_rows(lv, sp, label, "equalized_odds", [("difference", eo, None)])
    out = pd.DataFrame(rows, columns=GAP_COLUMNS)
    for c in ("value", "ci_low", "ci_high"):
        out[c] = out[c].astype(np.float64)
    return out


# ----------------------------------------------------------------------------- run helpers


def _by_level(run: Run, method: str) -> tuple[dict[int, pd.DataFrame], dict[int, float]]:
    levels = run.levels(method)
    return {lv: run.predictions(method, lv) for lv in levels}, {lv: run.sparsity(method, lv) for lv in levels}


def _with_reference(
    predictions_by_level: Mapping[int, pd.DataFrame], dense: pd.DataFrame
) -> tuple[dict[int, pd.DataFrame], int]:
    """The levels plus the dense reference under the key :data:`_REFERENCE`, rows in the levels' order."""
    first = next(iter(predictions_by_level.values()), None)
    if first is not None and "sample" in first and "sample" in dense:
        if not np.array_equal(first["sample"].to_numpy(), dense["sample"].to_numpy()):
            if set(first["sample"]) != set(dense["sample"]):
                raise ValueError("the dense reference was evaluated on other samples than the method")
            dense = dense.set_index("sample", drop=False).loc[first["sample"].to_numpy()]
            dense = dense.reset_index(drop=True)
    elif first is not None and len(first) != len(dense):
        raise ValueError("the dense reference was evaluated on other samples than the method")
    return {**predictions_by_level, _REFERENCE: dense}, _REFERENCE


def _reference_kwargs(run: Run, method: str, kwargs: dict) -> dict:
    """``dense=`` the run's dense reference predictions when it is another method (or level)."""
    from analysis.levels import dense_reference

    ref = dense_reference(run, method)
    if "dense" in kwargs or "dense_level" in kwargs or ref is None or ref == (method, 0):
        return kwargs
    return {**kwargs, "dense": run.predictions(*ref)}


def run_group_drops(
    run: Run, group_by: str | Sequence[str], methods: Sequence[str] | None = None, **kwargs
) -> pd.DataFrame:
    """:func:`group_drops` for every method of a run, with a leading ``method`` column."""
    frames = []
    for method in methods or run.methods:
        df = group_drops(*_by_level(run, method), group_by, **_reference_kwargs(run, method, kwargs))
        df.insert(0, "method", method)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def run_fairness_gaps(
    run: Run, group_by: str | Sequence[str], methods: Sequence[str] | None = None, **kwargs
) -> pd.DataFrame:
    """:func:`fairness_gaps` for every method of a run, with a leading ``method`` column."""
    frames = []
    for method in methods or run.methods:
        df = fairness_gaps(*_by_level(run, method), group_by, **_reference_kwargs(run, method, kwargs))
        df.insert(0, "method", method)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)
