"""Per-cell confusion counts, and the fairness metrics of every cell read from them.

A cell is one (level, group) pair of :mod:`analysis.fairness`. Every metric
there depends on a cell's samples only through its confusion matrix, so one
``bincount`` over all cells replaces fairlearn's ``MetricFrame``, which calls
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

import numpy as np

__all__ = ["cell_confusion", "cell_metrics", "parity_rates", "sorted_codes"]


def cell_confusion(
    y_true: np.ndarray, y_pred: np.ndarray, cells: np.ndarray, n_cells: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """The confusion matrix of every cell.

    Parameters
    ----------
    y_true, y_pred : ndarray of int or bool, shape (N,)
    cells : ndarray of int, shape (N,)
        The cell of each sample, in ``[0, n_cells)``.
    n_cells : int

    Returns
    -------
    labels : ndarray, shape (C,)
        The classes, sorted (sklearn's ``unique_labels`` order).
    counts : ndarray of int64, shape (n_cells, C, C)
        ``counts[k, i, j]``: samples of cell ``k`` with label ``labels[i]``
        predicted ``labels[j]``.
    None
        When the labels are not integers (sklearn's label handling is then
        left to sklearn).
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if not all(a.dtype.kind in "iub" for a in (y_true, y_pred)):
        return None
    n = y_true.size
    labels, codes = sorted_codes(np.concatenate([y_true, y_pred]))
    c = labels.size
    flat = (np.asarray(cells, dtype=np.int64) * c + codes[:n]) * c + codes[n:]  # (N,)
    counts = np.bincount(flat, minlength=n_cells * c * c).reshape(n_cells, c, c)
    return labels, counts


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


def cell_metrics(
    names: Sequence[str], labels: np.ndarray, counts: np.ndarray, pos_label
) -> np.ndarray | None:
    """Metrics of :mod:`analysis.fairness` in every cell, as its sklearn / fairlearn functions give them.

    Parameters
    ----------
    names : sequence of str
        Metric names of :data:`analysis.fairness.METRICS` and
        :data:`analysis.fairness.BINARY_METRICS`.
    labels : ndarray, shape (C,)
    counts : ndarray of int64, shape (K, C, C)
        :func:`cell_confusion`.
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
    k, c, _ = counts.shape
    n = counts.sum(axis=(1, 2))  # (K,)
    support = counts.sum(axis=2)  # (K, C) labels
    predicted = counts.sum(axis=1)  # (K, C) predictions
    hits = np.diagonal(counts, axis1=1, axis2=2)  # (K, C)
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


def parity_rates(labels: np.ndarray, counts: np.ndarray) -> np.ndarray | None:
    """The fairlearn ``selection_rate``, ``true_positive_rate`` and ``false_positive_rate`` per cell.

    With fairlearn's default ``pos_label`` (1, labels in {0, 1} or {-1, 1}) and
    its conventions: a rate with no sample to rest on is 0, not NaN.

    Parameters
    ----------
    labels : ndarray, shape (C,)
    counts : ndarray of int64, shape (K, C, C)
        :func:`cell_confusion`.

    Returns
    -------
    ndarray of float64, shape (K, 3)
        NaN rows for empty cells.
    None
        When the labels are not within {0, 1} or {-1, 1} (fairlearn raises).
    """
    values = set(labels.tolist())
    if not (values <= {0, 1} or values <= {-1, 1}):
        return None
    k = counts.shape[0]
    n = counts.sum(axis=(1, 2))
    if 1 in values:
        pos = int(np.flatnonzero(labels == 1)[0])
        p_true, p_pred, tp = counts[:, pos, :].sum(axis=1), counts[:, :, pos].sum(axis=1), counts[:, pos, pos]
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
