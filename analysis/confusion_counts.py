"""Per-cell class counts, and the fairness metrics of every cell read from them.

A cell is one (level, group) pair of :mod:`analysis.fairness`. Every metric
there depends on a cell's samples only through three counts per class (its
labels, its predictions, its correct predictions: the confusion matrix's row
and column sums and diagonal), so three ``bincount`` over all cells replace
fairlearn's ``MetricFrame``, which calls
the sklearn / fairlearn function once per cell (with its input validation) and
cost more than the rest of the Fairness page.

The values are those of the library functions bit for bit: the counts are
whole numbers, every rate is one division of the same two whole numbers the
library divides, and the class averages (balanced accuracy, macro recall) take
``np.mean`` / ``np.nanmean`` of the same per-class array, in the same (sorted)
class order, as sklearn does. Where a library function would raise (a binary
rate on a cell with more than two labels, labels that are not integers), the
functions here return None and the caller asks the library, which raises as
before. ``tests/test_fairness_speed.py`` holds them equal to fairlearn's
MetricFrame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["CellCounts", "cell_counts", "cell_metrics", "parity_rates", "sorted_codes"]


class CellCounts(NamedTuple):
    """Class counts of K cells (:func:`cell_counts`)."""

    labels: np.ndarray  # (C,) the classes, sorted (sklearn's unique_labels order)
    support: np.ndarray  # (K, C) int64: samples of each label
    predicted: np.ndarray  # (K, C) int64: samples predicted as each class
    hits: np.ndarray  # (K, C) int64: samples of each label predicted right


def cell_counts(y_true: np.ndarray, y_pred: np.ndarray, cells: np.ndarray, n_cells: int) -> CellCounts | None:
    """Labels, predictions and correct predictions per class, in every cell.

    Parameters
    ----------
    y_true, y_pred : ndarray of int or bool, shape (N,)
    cells : ndarray of int, shape (N,)
        The cell of each sample, in ``[0, n_cells)``.
    n_cells : int

    Returns
    -------
    CellCounts
        ``labels`` of shape (C,); ``support``, ``predicted``, ``hits`` of
        shape (n_cells, C).
    None
        When the labels are not integers (sklearn's label handling is then
        left to sklearn).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    both = np.concatenate([y_true, y_pred])
    if not all(a.dtype.kind in "iub" for a in (y_true, y_pred, both)):
        return None
    n = y_true.size
    labels, codes = sorted_codes(both)
    c = labels.size
    at = np.asarray(cells, dtype=np.int64) * c  # (N,)
    size = n_cells * c

    def count(flat: np.ndarray) -> np.ndarray:  # (n_cells, C)
        return np.bincount(flat, minlength=size).reshape(n_cells, c)

    right = codes[:n] == codes[n:]
    return CellCounts(labels, count(at + codes[:n]), count(at + codes[n:]), count((at + codes[:n])[right]))


def sorted_codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of integer values, by counting when their range is small.

    Parameters
    ----------
    values : ndarray of int or bool, shape (N,)

    Returns
    -------
    labels : ndarray, shape (C,)
        The distinct values, sorted, in the dtype of ``values``.
    codes : ndarray of int64, shape (N,)
        ``labels[codes] == values``.
    """
    values = np.asarray(values)
    if values.size == 0 or values.dtype.kind not in "iu":
        return np.unique(values, return_inverse=True)
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 1 << 16:
        return np.unique(values, return_inverse=True)
    shifted = values.astype(np.int64) - lo  # (N,) in [0, hi - lo]
    seen = np.bincount(shifted, minlength=hi - lo + 1) > 0
    rank = np.cumsum(seen) - 1  # position of each seen value among the sorted labels
    return (np.flatnonzero(seen) + lo).astype(values.dtype), rank[shifted]


def cell_metrics(names: Sequence[str], counts: CellCounts, pos_label: object) -> np.ndarray | None:
    """Metrics of :mod:`analysis.fairness` in every cell, as its sklearn / fairlearn functions give them.

    Parameters
    ----------
    names : sequence of str
        Metric names of :data:`analysis.fairness.METRICS` and
        :data:`analysis.fairness.BINARY_METRICS`.
    counts : CellCounts
        :func:`cell_counts` of K cells.
    pos_label
        Positive class of the binary metrics.

    Returns
    -------
    ndarray of float64, shape (K, len(names))
        NaN in empty cells, and where :mod:`analysis.fairness` makes TPR (FPR)
        NaN: a cell with no positive (negative) label.
    None
        When a binary rate is asked and a cell holds more than two labels, or
        two without ``pos_label`` (fairlearn raises there).
    """
    labels, support, predicted, hits = counts  # (C,), then (K, C) each
    k = support.shape[0]
    n = support.sum(axis=1)  # (K,)
    present = (support > 0) | (predicted > 0)  # (K, C): sklearn's unique_labels of the cell
    at = np.flatnonzero(labels == pos_label)
    pos = int(at[0]) if at.size else -1
    if pos < 0:
        p_true, p_hit, p_pred = np.zeros(k, np.int64), np.zeros(k, np.int64), np.zeros(k, np.int64)
    else:
        p_true, p_hit, p_pred = support[:, pos], hits[:, pos], predicted[:, pos]
    out = np.full((k, len(names)), np.nan)
    full = n > 0
    for j, name in enumerate(names):
        if name == "accuracy":
            # accuracy_score: sum(w * correct) / sum(w) of whole numbers
            out[full, j] = hits.sum(axis=1)[full] / n[full]
        elif name == "selection_rate":
            out[full, j] = p_pred[full] / n[full]
        elif name in ("true_positive_rate", "false_positive_rate"):
            if name == "true_positive_rate":
                num, den = p_hit, p_true
            else:
                num, den = p_pred - p_hit, n - p_true  # false positives, negatives
            ok = full & (den > 0)  # elsewhere NaN, fairlearn not asked
            n_present = present.sum(axis=1)
            pos_in = present[:, pos] if pos >= 0 else np.zeros(k, bool)
            if (ok & ((n_present > 2) | ((n_present == 2) & ~pos_in))).any():
                return None  # fairlearn raises "Must have ..." there
            out[ok, j] = num[ok] / den[ok]
        elif name in ("balanced_accuracy", "recall_macro"):
            for i in np.flatnonzero(full):
                if name == "balanced_accuracy":
                    # diag / row sum over the cell's classes, NaN rows (no label) dropped
                    has = support[i] > 0
                    out[i, j] = np.mean(hits[i, has] / support[i, has])
                else:
                    # recall per class of the cell's labels and predictions, 0 where no label
                    cls = present[i]
                    s = support[i, cls].astype(np.float64)
                    recall = hits[i, cls].astype(np.float64) / np.where(s == 0, 1.0, s)
                    recall[s == 0] = 0.0
                    out[i, j] = np.nanmean(recall)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def parity_rates(counts: CellCounts) -> np.ndarray | None:
    """The fairlearn ``selection_rate``, ``true_positive_rate`` and ``false_positive_rate`` per cell.

    With fairlearn's default ``pos_label`` (1, labels in {0, 1} or {-1, 1}) and
    its conventions: a rate with no sample to rest on is 0, not NaN.

    Parameters
    ----------
    counts : CellCounts
        :func:`cell_counts` of K cells.

    Returns
    -------
    ndarray of float64, shape (K, 3)
        NaN rows for empty cells.
    None
        When the labels are not within {0, 1} or {-1, 1} (fairlearn raises).
    """
    labels, support, predicted, hits = counts
    values = set(labels.tolist())
    if not (values <= {0, 1} or values <= {-1, 1}):
        return None
    k = support.shape[0]
    n = support.sum(axis=1)
    if 1 in values:
        pos = int(np.flatnonzero(labels == 1)[0])
        p_true, p_pred, tp = support[:, pos], predicted[:, pos], hits[:, pos]
    else:
        p_true = p_pred = tp = np.zeros(k, np.int64)
    neg, fp = n - p_true, p_pred - tp
    out = np.full((k, 3), np.nan)
    full = n > 0
    out[full, 0] = p_pred[full] / n[full]
    # confusion_matrix(normalize="true") then nan_to_num: 0 where a row is empty
    out[full, 1] = np.where(p_true > 0, tp / np.maximum(p_true, 1), 0.0)[full]
    out[full, 2] = np.where(neg > 0, fp / np.maximum(neg, 1), 0.0)[full]
    return out
