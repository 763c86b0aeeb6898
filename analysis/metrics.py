"""Labelled per-ticket metrics from a level's predictions table.

The paper scores every ticket as a one-vs-rest detector of its own subset and
reports balanced accuracy, precision and recall averaged over tickets; this
project adds the K-way accuracy under each routing. All numbers come from
:mod:`sklearn.metrics`.

Output contract (:func:`ticket_metrics`), one row per (ticket, metric):

ticket : Int64
    Subset / ticket index k (the ``k`` of ``detect_<k>``); ``<NA>`` marks an
    aggregate row.
metric : str
    ``balanced_accuracy``, ``precision``, ``recall`` (``detect_<k>`` against
    ``subset == k``); ``subset_accuracy_<routing>`` (accuracy on subset k's
    samples under that routing; experts and single tickets only);
    ``accuracy`` and ``accuracy_<routing>`` (K-way accuracy over all samples,
    aggregate rows only).
value : float
n : int
    Samples behind the value (subset size for a ticket row, all samples for an
    aggregate row).

Aggregate rows (``ticket`` is ``<NA>``) hold the unweighted mean over tickets
of each per-ticket metric (as the paper reports), and the K-way accuracies.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, balanced_accuracy_score, precision_score, recall_score

__all__ = ["TICKET_KINDS", "detector_columns", "routing_columns", "ticket_metrics"]

TICKET_KINDS = ("detector", "expert", "single", "imported")
_DETECT_RE = re.compile(r"^detect_(\d+)$")
_PRED_RE = re.compile(r"^pred_(.+)$")


def detector_columns(predictions: pd.DataFrame) -> dict[int, str]:
    """Map ticket index k to its ``detect_<k>`` column, sorted by k.

    Parameters
    ----------
    predictions : DataFrame
        A level's predictions table (columns: :mod:`artifacts.run_format`).

    Returns
    -------
    dict of int to str
    """
    found = {int(m.group(1)): c for c in predictions.columns if (m := _DETECT_RE.match(str(c)))}
    return dict(sorted(found.items()))


def routing_columns(predictions: pd.DataFrame) -> dict[str, str]:
    """Map routing name to its ``pred_<routing>`` column, in column order.

    Parameters
    ----------
    predictions : DataFrame

    Returns
    -------
    dict of str to str
    """
    return {m.group(1): c for c in predictions.columns if (m := _PRED_RE.match(str(c)))}


def _quiet(fn, *args, **kwargs) -> float:
    # A ticket that never fires, or a subset absent from the split, makes
    # sklearn warn on every level; the zero_division choice is documented.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        return float(fn(*args, **kwargs))


def ticket_metrics(predictions: pd.DataFrame, ticket_kind: str) -> pd.DataFrame:
    """One-vs-rest detector metrics per ticket, K-way accuracies, and their means.

    Parameters
    ----------
    predictions : DataFrame
        One row per sample with ``label``, ``subset``, ``pred``, ``pred_<routing>``
        and ``detect_<k>`` columns (see :mod:`artifacts.run_format`).
    ticket_kind : {"detector", "expert", "single", "imported"}
        How the method's tickets are used (``manifest["methods"][m]["ticket_kind"]``).
        Imported tickets carry no per-sample records: the table is empty.
        Per-subset accuracy under each routing is reported for ``expert`` and
        ``single`` (where a ticket or the one shared ticket predicts classes);
        for a class detector under oracle routing it would be trivially 1.

    Returns
    -------
    DataFrame
        Columns ``ticket`` (Int64, ``<NA>`` = aggregate), ``metric``, ``value``
        (float), ``n`` (int); see the module docstring.

    Notes
    -----
    Precision of a ticket that never fires is 0 (sklearn ``zero_division=0``).
    A ticket whose subset has no sample in the table gets ``n = 0`` and NaN
    recall / subset accuracy (undefined), and is left out of the means.
    Balanced accuracy follows sklearn: the mean recall over the classes
    present in the truth, so with no positives it is the specificity.
    Without ``detect_<k>`` columns (one ticket for all data over an input-space
    partition) only accuracies are reported, per subset and overall.
    """
    if ticket_kind not in TICKET_KINDS:
        raise ValueError(f"ticket_kind must be one of {TICKET_KINDS}, got {ticket_kind!r}")
    columns = ["ticket", "metric", "value", "n"]
    if ticket_kind == "imported" or predictions.empty:
        return pd.DataFrame({"ticket": pd.array([], dtype="Int64"), "metric": [], "value": [], "n": []})[
            columns
        ]
    detect = detector_columns(predictions)
    subset = predictions["subset"].to_numpy()
    label = predictions["label"].to_numpy()
    routings = routing_columns(predictions)

    rows: list[tuple[int | None, str, float, int]] = []
    tickets = list(detect) if detect else sorted(int(k) for k in np.unique(subset))
    for k in tickets:
        y_true = subset == k
        n_k = int(y_true.sum())
        if k in detect:
            y_det = predictions[detect[k]].to_numpy().astype(bool)
            if len(y_true):
                ba = _quiet(balanced_accuracy_score, y_true, y_det)
                prec = _quiet(precision_score, y_true, y_det, zero_division=0.0)
            else:
                ba = prec = np.nan
            rec = _quiet(recall_score, y_true, y_det, zero_division=0.0) if n_k else np.nan
            rows += [(k, "balanced_accuracy", ba, n_k), (k, "precision", prec, n_k), (k, "recall", rec, n_k)]
        if ticket_kind == "single" and n_k:
            acc = accuracy_score(label[y_true], predictions["pred"].to_numpy()[y_true])
            rows.append((k, "subset_accuracy", float(acc), n_k))
        if ticket_kind != "detector":
            for r, rcol in routings.items():
                pr = predictions[rcol].to_numpy()[y_true]
                acc = accuracy_score(label[y_true], pr) if n_k else np.nan
                rows.append((k, f"subset_accuracy_{r}", float(acc), n_k))

    per_ticket = pd.DataFrame(rows, columns=columns)
    means = (
        per_ticket.dropna(subset=["value"])
        .groupby("metric", sort=False)["value"]
        .mean()
        .reindex(per_ticket["metric"].unique())
    )
    n_all = len(predictions)
    agg = [(None, m, float(v), n_all) for m, v in means.items()]
    for name, col in [("accuracy", "pred"), *((f"accuracy_{r}", c) for r, c in routings.items())]:
        if col in predictions and n_all:
            agg.append((None, name, float(accuracy_score(label, predictions[col].to_numpy())), n_all))
    out = pd.concat([per_ticket, pd.DataFrame(agg, columns=per_ticket.columns)], ignore_index=True)
    out["ticket"] = out["ticket"].astype("Int64")
    out["value"] = out["value"].astype(float)
    out["n"] = out["n"].astype(int)
    return out
